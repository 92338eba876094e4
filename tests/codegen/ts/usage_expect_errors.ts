// Every line after a @ts-expect-error must fail to compile; if one stops failing, tsc reports TS2578.
import { connect, type ChatMessage, type ChatMessageInput } from "./generated/ss.client.js";

const client = connect("ws://127.0.0.1:1/socket");
const message: ChatMessageInput = { room: "r", text: "hi", author_id: 1, sent_at: "2024-01-01T00:00:00" };
declare const either: "say" | "toggle";

// @ts-expect-error a required field is missing
client.send.chat({ room: "r", text: "hi", author_id: 1 });
// @ts-expect-error a field of the wrong type
client.send.chat({ ...message, author_id: "1" });
// @ts-expect-error an unknown field
client.send.chat({ room: "r", text: "hi", author_id: 1, sent_at: "x", colour: "red" });
// @ts-expect-error an enum value that does not exist
client.send.chat({ ...message, color: "blue" });
// @ts-expect-error an event the server does not handle
client.emit("nope", 1);
// @ts-expect-error an event the server does not handle
client.send.nope(1);
// @ts-expect-error a JSON payload is required
client.send.chat();
// @ts-expect-error a tagged union needs its tag
client.send.action({ room: "r" });
// @ts-expect-error no member has this tag
client.send.pet({ kind: 3, name: "x" });
// @ts-expect-error a pydantic discriminator with a default is still required when sending
client.send.paction({ room: "r" });
// @ts-expect-error pydantic fields go by alias
client.send.profile({ name: "ann" });
// @ts-expect-error too many tuple elements
client.send.move([1, 2, 3]);
// @ts-expect-error a text event takes a string
client.send.say({ text: "hi" });
// @ts-expect-error a binary event does not take a string
client.send.upload("bytes");
// @ts-expect-error a JSON string literal outside the Literal
client.send.toggle("maybe");
// @ts-expect-error an event-name union cannot mix payloads
client.emit(either, "hello");
// @ts-expect-error the sent shape is not the received one: defaulted fields may be missing
const received: ChatMessage = message;
// @ts-expect-error an event the server does not send
client.on("nope", () => {});
client.on("chat", (m) => {
  // @ts-expect-error a received field has its declared type
  const n: number = m.text;
  // @ts-expect-error an UNSET field may be missing even in received data
  const edited: boolean = m.edited;
  void [n, edited];
});
client.on("presence", (p) => {
  // @ts-expect-error only Leave has a reason
  void p.reason;
});
client.onServerError((error) => {
  // @ts-expect-error the error codes are a closed set
  const code: "other" = error.code;
  void code;
});
// @ts-expect-error a call's payload has its event's type
void client.call.add({ a: "1" });
// @ts-expect-error a JSON payload is required for a call too
void client.call.add();
// @ts-expect-error an event the server does not handle cannot be called
void client.call.nope(1);
// @ts-expect-error a call's options are not a payload
void client.call.add({ a: 1 }, { timeout: "soon" });
void client.call.add({ a: 1 }).then((result) => {
  // @ts-expect-error the reply has the handler's return type
  const text: string = result.sum;
  void text;
});
void client.call.chat(message).then((result) => {
  // @ts-expect-error a handler that returns None replies null
  const text: string = result;
  void text;
});
// @ts-expect-error the server does not call this event
client.handle.chat(() => null);
// @ts-expect-error the reply must be an Answer
client.handle.confirm(() => ({ yes: "no" }));
// @ts-expect-error the reply must be an Answer: yes is required
client.handle.confirm(async () => ({ reason: "?" }));
// @ts-expect-error the reply to a text event is a string
client.handle.greet(async () => 1);
// @ts-expect-error the reply to a binary event is binary
client.handle.sign(() => "bytes");
// @ts-expect-error a reply that is not null cannot be left out
client.handle.greet(() => {});
client.handle.confirm((q) => {
  // @ts-expect-error the handler gets the event's payload
  const n: number = q.text;
  return { yes: n > 0 };
});
// @ts-expect-error a server without presence: its client has no presence API
client.onPresence(() => {});
// @ts-expect-error a server without presence: its client has no members query
void client.members("r");
void received;
