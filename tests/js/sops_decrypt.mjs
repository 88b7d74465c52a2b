// Decrypts a SOPS file with the npm package sops-age and prints the plaintext as JSON.
// Usage: node sops_decrypt.mjs <dir where sops-age is installed> <file.yaml> <age identity file>
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join } from "node:path";

const [installed, file, identityFile] = process.argv.slice(2);
const require = createRequire(join(installed, "package.json"));
const { decryptSops } = require("sops-age");
const secretKey = (await readFile(identityFile, "utf-8"))
  .split("\n")
  .map((line) => line.trim())
  .find((line) => line.startsWith("AGE-SECRET-KEY-1"));
const plain = await decryptSops({ path: file, secretKey });
process.stdout.write(JSON.stringify(plain));
