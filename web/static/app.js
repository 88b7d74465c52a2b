// Environment rows on the deployment form: add and remove without a reload; values grow
// with their lines (up to 8), so a multi-line value shown again after an error stays readable.
(function () {
  const rows = document.getElementById("env-rows");
  const add = document.getElementById("add-env");
  if (!rows || !add) return;
  function fit(textarea) {
    textarea.rows = Math.min(8, Math.max(1, textarea.value.split("\n").length));
  }
  rows.querySelectorAll("textarea").forEach(fit);
  rows.addEventListener("input", function (event) {
    if (event.target.tagName === "TEXTAREA") fit(event.target);
  });
  add.addEventListener("click", function () {
    const row = rows.querySelector(".env-row").cloneNode(true);
    row.querySelectorAll("input, textarea").forEach(function (el) { el.value = ""; });
    row.querySelectorAll("textarea").forEach(fit);
    rows.appendChild(row);
    row.querySelector("input").focus();
  });
  rows.addEventListener("click", function (event) {
    if (!event.target.classList.contains("remove-env")) return;
    const row = event.target.closest(".env-row");
    if (rows.querySelectorAll(".env-row").length > 1) row.remove();
    else row.querySelectorAll("input, textarea").forEach(function (el) { el.value = ""; if (el.tagName === "TEXTAREA") fit(el); });
  });
})();

// Confirm steps in a <dialog>: a link with data-opens="<dialog id>" opens it instead of
// following its href (the same confirm step as a page, for browsers without JavaScript).
(function () {
  document.addEventListener("click", function (event) {
    const opener = event.target.closest("[data-opens]");
    if (!opener) return;
    const dialog = document.getElementById(opener.dataset.opens);
    if (!dialog || typeof dialog.showModal !== "function") return;
    event.preventDefault();
    dialog.showModal();
    const cancel = dialog.querySelector("[formmethod=dialog]");  // the safe choice first
    if (cancel) cancel.focus();
  });
})();
