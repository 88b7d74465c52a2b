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
    showRecent(repos);
  }
  // The group's newest images, shown without focusing the field: a click fills it in.
  const recent = document.querySelector("[data-testid=recent-images]");
  const field = document.querySelector("input[name=image]");
  function showRecent(repos) {
    if (!recent) return;
    const newest = repos.slice().sort(function (a, b) {
      return String(b.created || "").localeCompare(String(a.created || ""));
    }).slice(0, 5);
    const items = newest.map(function (repo) {
      const item = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "link";
      button.dataset.image = repo.reference;
      const code = document.createElement("code");
      code.textContent = repo.reference;
      button.appendChild(code);
      const about = document.createElement("span");
      about.className = "muted";
      about.textContent = " " + (repo.created ? "built " + ago(repo.created) + " · " : "") + bytes(repo.size);
      item.append(button, about);
      return item;
    });
    recent.querySelector("ul").replaceChildren.apply(recent.querySelector("ul"), items);
    recent.hidden = !items.length;
  }
  function ago(created) {  // as the server words it: "3 days ago", "just now"
    const seconds = Math.floor((Date.now() - Date.parse(created)) / 1000);
    const steps = [[86400, "day"], [3600, "hour"], [60, "minute"]];
    for (let i = 0; i < steps.length; i++) {
      if (seconds >= steps[i][0]) {
        const count = Math.floor(seconds / steps[i][0]);
        return count + " " + steps[i][1] + (count > 1 ? "s" : "") + " ago";
      }
    }
    return "just now";
  }
  function bytes(size) {
    const units = [["Gi", 1073741824], ["Mi", 1048576], ["Ki", 1024]];
    for (let i = 0; i < units.length; i++) {
      if (size >= units[i][1]) return (Math.round(size / units[i][1] * 10) / 10) + units[i][0];
    }
    return size + " B";
  }
  if (recent && field) {
    recent.addEventListener("click", function (event) {
      const button = event.target.closest("button[data-image]");
      if (!button) return;
      field.value = button.dataset.image;
      field.focus();
    });
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
