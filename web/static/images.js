// The image picker on the deployment form: when the group changes, offer that group's
// images (from /api/v1/groups/<group>/images) in the datalist; typing stays free.
(function () {
  const list = document.getElementById("image-choices");
  const group = document.querySelector("select[name=group]");
  if (!list || !group) return;
  const note = document.querySelector("[data-testid=image-note]");
  const MAX_TAGS = 20;
  function say(text, detail) {
    if (!note) return;
    note.textContent = text;
    note.title = detail || "";
    note.hidden = !text;
  }
  function show(repos) {
    const options = [];
    repos.forEach(function (repo) {
      repo.tags.slice(0, MAX_TAGS).forEach(function (tag, index) {
        const option = document.createElement("option");
        option.value = list.dataset.host + "/" + repo.repository + ":" + tag;
        if (index === 0) option.label = "newest";
        options.push(option);
      });
    });
    list.replaceChildren.apply(list, options);
    say(repos.length ? "" : "No images for this group yet.");
  }
  group.addEventListener("change", function () {
    const chosen = group.value;
    const url = list.dataset.source.replace("GROUP", encodeURIComponent(chosen));
    fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        return response.json().then(function (body) {
          if (!response.ok) throw new Error(body.message || response.statusText);
          return body;
        });
      })
      .then(function (repos) { if (group.value === chosen) show(repos); })
      .catch(function (error) {
        if (group.value !== chosen) return;
        list.replaceChildren();
        say("The image list is unavailable right now; type the image reference.", String(error.message || error));
      });
  });
})();
