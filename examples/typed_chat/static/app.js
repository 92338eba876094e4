// @ts-check
// The typed chat page. It imports the client generated from the server's contract (generated/, made by
// `typed-ss gen-client ... --lang js`); tsc checks this file against generated/ss.client.d.ts
// (tsconfig.json here), so a wrong payload is a type error before it is a runtime one.
import { connect } from "./generated/ss.client.js";

/** @param {string} id */
const $ = (id) => /** @type {HTMLInputElement} */ (document.getElementById(id));
const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/socket";
const client = connect(url);
let typing = false;

/**
 * @param {string} text
 * @param {"message" | "notice" | "error"} kind
 */
function show(text, kind) {
  const item = document.createElement("li");
  item.className = kind;
  item.textContent = text; // never innerHTML: messages come from other people
  $("messages").appendChild(item);
  item.scrollIntoView({ block: "end" });
}

/** @param {string} text @param {boolean} online */
function setStatus(text, online) {
  $("status").textContent = text;
  $("status").className = "status " + (online ? "online" : "offline");
}

function join() {
  client.send.join({ room: $("room").value.trim() || "global", name: $("name").value.trim() || "guest" });
}

client.onConnect(() => {
  setStatus("connected", true);
  join(); // rooms do not survive a reconnect: join again
});
client.onDisconnect(() => setStatus("reconnecting…", false));
client.onServerError((error) => show(`${error.event}: ${error.detail}`, "error"));
client.onReloadNeeded(() => {
  setStatus("out of date", false);
  show("This page is out of date: reload it to get the new version.", "error");
});

client.on("joined", (room) => {
  $("current-room").textContent = room.room;
  show(`you joined ${room.room} as ${room.name}`, "notice");
});
client.on("presence", (p) => {
  $("members").textContent = `(${p.members} here)`;
  if (p.who !== $("name").value.trim()) show(`${p.who} ${p.joined ? "joined" : "left"}`, "notice");
});
client.on("said", (line) => show(`${line.author}: ${line.text}`, "message"));
client.on("activity", (a) => {
  $("activity").textContent = a.status === "typing" ? `${a.who} is typing…` : "";
});

$("join-form").addEventListener("submit", (event) => {
  event.preventDefault();
  join();
});
$("text").addEventListener("input", () => {
  const now = $("text").value !== "";
  if (now !== typing) client.send.status(now ? "typing" : "idle");
  typing = now;
});
$("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const text = $("text").value.trim();
  if (!text) return;
  client.send.say({ text });
  $("text").value = "";
  typing = false;
  client.send.status("idle");
});
