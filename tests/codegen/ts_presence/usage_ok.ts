// Must compile: the presence API of the generated client (tests/codegen/presence_app.py), as an application uses it.
import {
  connect,
  type CallError,
  type Card,
  type Members,
  type PresenceEvent,
  type TypedClient,
  type Unsubscribe,
} from "./generated/ss.client.js";

const client: TypedClient = connect("ws://127.0.0.1:1/socket?user=ann", { reconnectOpts: { enabled: false } });

// Events: the change, the room, the socket, and the member's payload (or null).
const off: Unsubscribe = client.onPresence((event) => {
  const change: "joined" | "left" = event.change;
  const card: Card | null = event.presence;
  const room: string = event.room;
  const socket: string = event.socket;
  console.log(change, room, socket, card?.name, card?.status === "away");
});
off();
const seen: PresenceEvent[] = [];
client.onPresence((event) => seen.push(event));

// The members query: typed by the server's presence payload type.
async function names(room: string): Promise<string[]> {
  await client.call.join(room);
  const listed: Members = await client.members(room);
  const again = await client.members(room, { timeout: 1000 });
  const missing: string[] = again.missing;
  const truncated: boolean = listed.truncated;
  console.log(missing.length, truncated, listed.members[0]?.instance);
  return listed.members.map((member) => member.presence?.name ?? member.socket);
}

names("chat:tea").catch((e: unknown) => {
  const error = e as CallError;
  if (error.name === "ServerError" && error.code === "forbidden") console.warn("not a member");
});
