// Sign-in: check the token against /v1/whoami, keep it for this tab, go to the board (or where we came from).
import { PREFIX, api, setToken, showError } from "./api.js";

function destination() {
  const next = new URLSearchParams(location.search).get("next");
  // Only a console page of this origin: never an open redirect.
  if (next && next.startsWith(`${PREFIX}/`) && !next.startsWith("//") && !next.startsWith(`${PREFIX}/signin`)) {
    return next;
  }
  return `${PREFIX}/`;
}

const form = document.getElementById("signin-form");
const input = document.getElementById("token");
const button = document.getElementById("signin");
const error = document.getElementById("error");

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = input.value.trim();
  showError(error, null);
  if (!token) {
    showError(error, "请输入令牌 Enter a token");
    return;
  }
  button.disabled = true;
  try {
    await api("/v1/whoami", { token, noRedirect: true });
    setToken(token);
    location.assign(destination());
  } catch (problem) {
    showError(error, problem);
    button.disabled = false;
  }
});
