// The photo page without reloads: chosen photos are sent at once and their results added
// above the earlier ones; "Send for review" reuses the photo already chosen. The API key
// (when the server asks for one) is kept in localStorage. Without this script the forms
// post and the server answers with whole pages.
"use strict";

document.documentElement.classList.add("js");

const KEY_STORE = "classifi.apiKey";
const form = document.getElementById("classify-form");
const results = document.getElementById("results");
const keyBox = document.getElementById("key-box");
const keyInput = document.getElementById("api-key");
const photoOf = new WeakMap(); // result card -> the File it shows

if (keyInput && localStorage.getItem(KEY_STORE)) {
  keyInput.value = localStorage.getItem(KEY_STORE);
  keyBox.open = false;
}

function fragment(html) {
  const template = document.createElement("template");
  template.innerHTML = html;
  return template.content;
}

function note(text) {
  const message = document.createElement("div");
  message.className = "message";
  message.setAttribute("role", "alert");
  message.textContent = text;
  return message;
}

// Post `data` to `url`; the answer is the HTML of the part of the page that changed.
async function post(url, data) {
  if (keyInput) data.set("api_key", keyInput.value.trim());
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      body: data,
      headers: { "X-Page-Fragment": "1" },
      credentials: "same-origin",
    });
  } catch {
    return note("The server did not answer: check the connection, then try again.");
  }
  if (response.status === 401 && keyInput) {
    localStorage.removeItem(KEY_STORE);
    keyInput.value = "";
    keyBox.open = true;
    keyInput.focus();
  } else if (response.ok && keyInput && keyInput.value.trim()) {
    localStorage.setItem(KEY_STORE, keyInput.value.trim());
  }
  return fragment(await response.text());
}

async function classify(files) {
  const data = new FormData();
  data.set("csrf_token", form.elements.csrf_token.value);
  for (const file of files) data.append("photos", file, file.name);
  const batch = document.createElement("div");
  batch.className = "sending";
  batch.textContent = files.length === 1 ? "Classifying the photo…" : `Classifying ${files.length} photos…`;
  results.prepend(batch);
  const answer = await post(form.action, data);
  for (const card of answer.querySelectorAll("[data-photo]")) {
    const file = files[Number(card.dataset.photo)];
    if (!file) continue;
    photoOf.set(card, file);
    card.classList.add("has-file");
    if (card.classList.contains("failed")) continue; // not an image the browser could show
    const preview = card.querySelector(".preview");
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
  }
  batch.replaceWith(answer);
}

for (const input of form.querySelectorAll('input[type="file"]')) {
  input.addEventListener("change", () => {
    const files = [...input.files];
    input.value = ""; // the same photo may be chosen again
    if (files.length) classify(files);
  });
}

form.addEventListener("submit", (event) => {
  event.preventDefault(); // with the script, choosing photos sends them
});

results.addEventListener("submit", async (event) => {
  const propose = event.target.closest("form.propose");
  if (!propose) return;
  event.preventDefault();
  const card = propose.closest("[data-photo]");
  const data = new FormData(propose);
  const chosen = propose.elements.photo.files[0];
  const file = chosen || photoOf.get(card);
  if (file) data.set("photo", file, file.name);
  propose.querySelector("button").disabled = true;
  propose.replaceWith(await post(propose.action, data));
});

const forget = document.querySelector("form.forget-key");
if (forget) forget.addEventListener("submit", () => localStorage.removeItem(KEY_STORE));
