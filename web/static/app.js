// Environment rows on the deployment form: add and remove without a reload.
(function () {
  const rows = document.getElementById("env-rows");
  const add = document.getElementById("add-env");
  if (!rows || !add) return;
  add.addEventListener("click", function () {
    const row = rows.querySelector(".env-row").cloneNode(true);
    row.querySelectorAll("input, textarea").forEach(function (el) { el.value = ""; });
    rows.appendChild(row);
    row.querySelector("input").focus();
  });
  rows.addEventListener("click", function (event) {
    if (!event.target.classList.contains("remove-env")) return;
    const row = event.target.closest(".env-row");
    if (rows.querySelectorAll(".env-row").length > 1) row.remove();
    else row.querySelectorAll("input, textarea").forEach(function (el) { el.value = ""; });
  });
})();
