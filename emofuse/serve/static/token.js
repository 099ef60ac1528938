// The API token of emofuse's pages (`emofuse serve`, `emofuse label`): a page whose server
// wants one shows #token-form (its fields are made here, its prompt is the form's
// data-prompt); the token is kept in this page's memory only (never in storage or
// cookies) and sent as "Authorization: Bearer" by api(). Loaded before the page's app.js.
"use strict";

const apiToken = { value: null };

// fetch() with the token, if one was given.
function api(path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (apiToken.value) headers.set("Authorization", `Bearer ${apiToken.value}`);
  return fetch(path, { ...options, headers, credentials: "omit", cache: "no-store" });
}

function buildTokenForm() {
  const form = document.getElementById("token-form");
  if (form.elements.length) return form;
  const make = (tag, props = {}) => Object.assign(document.createElement(tag), props);
  const fieldset = make("fieldset");
  const label = make("label", {
    htmlFor: "token-input",
    textContent: `${form.dataset.prompt || "This server needs a token."} It stays in this `
      + "page's memory only: reloading the page forgets it.",
  });
  const row = make("div", { className: "token-row" });
  row.append(
    make("input", {
      type: "password", id: "token-input", name: "token", autocomplete: "off",
      spellcheck: false, required: true,
    }),
    make("button", { type: "submit", id: "token-btn", textContent: "Use token" }),
  );
  fieldset.append(make("legend", { textContent: "API token" }), label, row);
  form.append(fieldset);
  return form;
}

// Show the token form, forgetting the token held so far.
function showTokenForm() {
  apiToken.value = null;
  buildTokenForm().hidden = false;
  document.getElementById("token-input").focus();
}

// The token typed into the form, from now on sent by api(); null when none was typed.
// The field is emptied so that the token does not stay in the page.
function takeTypedToken(event) {
  event.preventDefault();
  const input = document.getElementById("token-input");
  const token = input.value.trim();
  input.value = "";
  if (token) apiToken.value = token;
  return token || null;
}

buildTokenForm();
