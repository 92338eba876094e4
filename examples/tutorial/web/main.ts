// The chat page: index.html loads main.js, which `npx tsc -p web` compiles from this file.
import { connect } from "./generated/ss.client.js";

const params = new URLSearchParams(location.search);
const room = params.get("room") ?? "lobby";
const token = params.get("token") ?? ""; // a real page has a session cookie, sent with the upgrade
const scheme = location.protocol === "https:" ? "wss" : "ws";

const log = document.querySelector("#log")!;
const form = document.querySelector("form")!;
const input = document.querySelector("input")!;

function show(text: string): void {
  const item = document.createElement("li");
  item.textContent = text;
  log.append(item);
}

const client = connect(`${scheme}://${location.host}/socket?token=${encodeURIComponent(token)}`);

client.on("welcome", (me) => show(`Signed in as ${me.name}${me.admin ? " (admin)" : ""}`)); // me: User
client.on("line", (line) => show(line.author === null ? line.text : `${line.author}: ${line.text}`));
client.onConnect(() => client.send.join({ room })); // again after every reconnect
client.onError((error) => show(`${error.code}: ${error.message}`)); // refused, invalid, disconnected...

form.addEventListener("submit", (event) => {
  event.preventDefault();
  client.send.say({ text: input.value });
  input.value = "";
});
