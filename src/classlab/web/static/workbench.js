// classlab workbench: the little the pages need beyond htmx. No inline scripts (the CSP forbids them).
"use strict";

function watchJob(panel) {
  // Live job progress: the server renders the panel and sends it as server-sent events.
  const source = new EventSource(panel.dataset.events);
  source.addEventListener("progress", (e) => { panel.innerHTML = e.data; htmx.process(panel); });
  source.addEventListener("done", () => source.close());
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) return; };
}

function setupDrop(zone, input) {
  const chosen = document.getElementById("chosen");
  const most = Number(input.dataset.max || 0);  // the server's limit on files in one upload
  const show = () => {
    const n = input.files.length;
    chosen.textContent = n ? n + " file(s) chosen" : "";
    chosen.classList.toggle("error", most > 0 && n > most);
    if (most > 0 && n > most) chosen.textContent += ": at most " + most + " go in one upload; choose fewer and add the rest after";
  };
  input.addEventListener("change", show);
  show();  // files chosen before this script ran (a slow page, or the browser keeping them on Back) are counted too
  const folder = document.getElementById("folder");
  if (folder) folder.addEventListener("change", () => {  // a folder's image files join the chosen ones
    const files = new DataTransfer();
    for (const f of input.files) files.items.add(f);
    for (const f of folder.files) if (f.type.startsWith("image/") && !f.name.startsWith(".")) files.items.add(f);
    input.files = files.files;
    folder.value = "";
    show();
  });
  ["dragenter", "dragover"].forEach((t) => zone.addEventListener(t, (e) => { e.preventDefault(); zone.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => zone.addEventListener(t, () => zone.classList.remove("over")));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    const files = new DataTransfer();
    for (const f of e.dataTransfer.files) if (f.type.startsWith("image/") || f.name.match(/\.(png|jpe?g|bmp|gif|tiff?|webp)$/i)) files.items.add(f);
    input.files = files.files;
    show();
  });
}

function setupWebcam(input) {
  const start = document.getElementById("webcam-start"), snap = document.getElementById("webcam-snap");
  const video = document.getElementById("webcam");
  if (!start) return;
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) { start.hidden = true; return; }
  start.addEventListener("click", async () => {
    try {
      video.srcObject = await navigator.mediaDevices.getUserMedia({ video: true });
      video.hidden = false; snap.hidden = false;
    } catch (err) {
      start.textContent = "No webcam available";
      start.disabled = true;
    }
  });
  snap.addEventListener("click", () => {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth; canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => {
      const files = new DataTransfer();
      for (const f of input.files) files.items.add(f);
      files.items.add(new File([blob], "webcam-" + Date.now() + ".png", { type: "image/png" }));
      input.files = files.files;
      input.dispatchEvent(new Event("change"));
    }, "image/png");
  });
}

function markCell(e) {
  // the chosen confusion cell stays highlighted while its images are shown
  const link = e.target.closest("table.confusion td.cell a");
  if (!link) return;
  document.querySelectorAll("table.confusion td.selected").forEach((td) => td.classList.remove("selected"));
  link.parentElement.classList.add("selected");
}

function revealSwapped(e) {
  // a card opens below the matrix: bring it into view (cells and thumbnails are above it)
  const target = e.detail.target;
  if (target && (target.id === "card-panel" || target.id === "cell-panel") && target.scrollIntoView) {
    target.scrollIntoView({ block: "nearest", behavior: "smooth" });
  }
}

function setupCompare(form) {
  // the baseline is the first run ticked, not the first row: the tick order travels in a hidden field
  let ticked = [];
  const hint = document.getElementById("baseline-hint");
  const show = () => {
    document.getElementById("ticked").value = ticked.join(",");
    if (hint) hint.textContent = ticked.length ? "Baseline: " + ticked[0] + " (the first run you ticked)."
      : "The first run you tick is the baseline; runs must be scored on the same test images.";
  };
  form.addEventListener("change", (e) => {
    if (e.target.name !== "runs") return;
    ticked = ticked.filter((id) => id !== e.target.value);
    if (e.target.checked) ticked.push(e.target.value);
    show();
  });
  document.addEventListener("htmx:afterSwap", (e) => {  // a re-sorted table comes unticked
    if (e.detail.target.id === "runs-table") { ticked = []; show(); }
  });
}

function setupMap(figure) {
  // the image under the pointer, beside it: the map's dots are links to cards, their ids in data-id
  const preview = document.getElementById("map-preview");
  const img = preview.querySelector("img"), caption = preview.querySelector("span");
  figure.addEventListener("mouseover", (e) => {
    const dot = e.target.closest("a.dot");
    if (!dot) return;
    img.src = "/runs/" + figure.dataset.run + "/image?side=96&id=" + encodeURIComponent(dot.dataset.id);
    caption.textContent = dot.dataset.id;
    preview.hidden = false;
  });
  figure.addEventListener("mousemove", (e) => {
    const box = figure.getBoundingClientRect();
    preview.style.left = (e.clientX - box.left + 14) + "px";
    preview.style.top = (e.clientY - box.top + 14) + "px";
  });
  figure.addEventListener("mouseleave", () => { preview.hidden = true; });
}

function reviewKeys(e) {
  if (e.target.matches("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
  const button = document.querySelector(`#review button[data-key="${e.key.toLowerCase()}"]`);
  if (button) { e.preventDefault(); button.click(); }
}

document.addEventListener("click", markCell);
document.addEventListener("htmx:afterSwap", revealSwapped);

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-events]").forEach(watchJob);
  const input = document.getElementById("images");
  if (input) { setupDrop(document.getElementById("drop"), input); setupWebcam(input); }
  if (document.getElementById("review")) document.addEventListener("keydown", reviewKeys);
  const map = document.querySelector("figure.emap");
  if (map) setupMap(map);
  const compare = document.getElementById("compare-form");
  if (compare) setupCompare(compare);
  const command = document.getElementById("command");
  if (command) {
    const sync = () => document.querySelectorAll(".for-train, .for-transfer").forEach((el) => {
      el.hidden = !el.classList.contains("for-" + command.value);
    });
    command.addEventListener("change", sync);
    sync();
  }
});
