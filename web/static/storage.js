// The Storage tab: the create form offers the access modes of the class chosen (every mode
// without JavaScript; the server says which ones a class offers), and destructive forms
// with data-confirm ask first.
(function () {
  const form = document.querySelector("[data-testid=create-volume]");
  const classes = form && form.querySelector("select[name=storageClass]");
  const modes = form && form.querySelector("select[name=accessMode]");
  if (classes && modes) {
    function offer() {
      const chosen = classes.options[classes.selectedIndex];
      const offered = ((chosen && chosen.dataset.modes) || "").split(" ");
      let first = null;
      Array.from(modes.options).forEach(function (option) {
        const ok = offered.includes(option.value);
        option.hidden = !ok;
        option.disabled = !ok;
        if (ok && first === null) first = option;
      });
      const current = modes.options[modes.selectedIndex];
      if ((!current || current.disabled) && first) modes.value = first.value;
    }
    classes.addEventListener("change", offer);
    offer();
  }
  document.addEventListener("submit", function (event) {
    const asking = event.target.closest("form[data-confirm]");
    if (asking && !window.confirm(asking.dataset.confirm)) event.preventDefault();
  });
})();
