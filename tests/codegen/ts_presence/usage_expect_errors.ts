// Every line after a @ts-expect-error must fail to compile; if one stops failing, tsc reports TS2578.
import { connect, type Members, type PresenceEvent } from "./generated/ss.client.js";

const client = connect("ws://127.0.0.1:1/socket");

client.onPresence((event) => {
  // @ts-expect-error the payload may be null
  console.log(event.presence.name);
  // @ts-expect-error a field the payload type does not have
  console.log(event.presence?.age);
  // @ts-expect-error the change is "joined" or "left"
  const change: "moved" = event.change;
  console.log(change);
});

// @ts-expect-error a listener of another event type
client.onPresence((event: { room: number }) => console.log(event.room));

async function wrong(): Promise<void> {
  // @ts-expect-error the room is a string
  await client.members(1);
  // @ts-expect-error the room is required
  await client.members();
  const listed: Members = await client.members("chat:tea");
  // @ts-expect-error a member's payload may be null
  console.log(listed.members[0]?.presence.name);
  // @ts-expect-error the members are not strings
  const ids: string[] = listed.members;
  console.log(ids);
}

const event: PresenceEvent = { room: "r", change: "joined", socket: "s", presence: null };
// @ts-expect-error a payload that is not the server's presence type
const wrongPayload: PresenceEvent = { ...event, presence: { name: 1 } };
console.log(wrong, wrongPayload);
