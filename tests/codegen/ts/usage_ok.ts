// Must compile: the generated client (tests/codegen/app.py) used the way an application would.
import {
  CONTRACT,
  connect,
  type AddResult,
  type Answer,
  type AnswerInput,
  type CallError,
  type CallOptions,
  type ChatMessage,
  type ChatMessageInput,
  type Color,
  type ContractMismatch,
  type ContractStatus,
  type EverythingInput,
  type Profile,
  type Question,
  type ReloadNeeded,
  type ServerError,
  type Tree,
  type TypedClient,
} from "./generated/ss.client.js";

const client: TypedClient = connect("ws://127.0.0.1:1/socket?token=abc", { reconnectOpts: { enabled: false } });

// Sending: fields with defaults may be left out, and given.
const message: ChatMessageInput = { room: "r", text: "hi", author_id: 1, sent_at: new Date().toISOString() };
const sent: boolean = client.emit("chat", message);
client.send.chat(message);
client.send.chat({ ...message, tags: ["a"], color: "green", reply_to: null, attachments: [{ name: "a", size: 1 }] });
client.send.chat({ ...message, edited: true });

// Wire kinds: raw text, binary, JSON null (payload optional), JSON string literal.
client.send.say("hello");
client.emit("say", "hello");
client.send.upload(new Uint8Array([1, 2, 3]));
client.send.upload(new ArrayBuffer(4));
client.send.upload(new DataView(new ArrayBuffer(1)));
client.send.upload(new Blob(["abc"]));
client.send.ping();
client.send.ping(null);
client.emit("ping");
client.send.toggle("on");
client.emit("toggle", "off");
client.send.fail(1);

// Tagged unions: the tag is required and picks the member.
client.send.action({ type: "Join", room: "r" });
client.send.action({ type: "Leave", room: "r" });
client.send.action({ type: "Leave", room: "r", reason: "bye" });
client.send.pet({ kind: 1, name: "tom" });
client.send.pet({ kind: 2, name: "rex" });
client.send.paction({ type: "join", room: "r" });
client.send.paction({ type: "leave" });

// array_like structs and NamedTuples are labelled tuples; trailing defaults are optional when sent.
client.send.move([1]);
client.send.move([1, 2]);
client.send.span([0, 5]);
client.send.span([0]);

// Recursive, generic, TypedDict, dataclass, omit_defaults, pydantic (by alias), colliding names.
client.send.tree({ value: 1, children: [{ value: 2 }, { value: 3, children: [] }] });
client.send.page({ items: [1, 2] });
client.send.page({ items: [], next: null });
client.send.options({ verbose: true });
client.send.options({ verbose: false, level: 2 });
client.send.box({ width: 1 });
client.send.sparse({});
client.send.profile({ userName: "ann" });
client.send.profile({ userName: "ann", age: 3, color: "red", friends: [{ userName: "bob" }] });
client.send.profiles([{ userName: "ann" }]);
client.send.message({ text: "t" });
client.send["other-message"]({ body: "b" });
client.emit("other-message", { body: "b", urgent: true });

const everything: EverythingInput = {
  anInt: 1,
  aFloat: 1.5,
  num: 2,
  maybe: null,
  lit: "a",
  yes: true,
  color: "red",
  priority: 2,
  perm: 3,
  items: [1, null],
  unique: ["a"],
  frozen: [1],
  varTuple: [1, 2, 3],
  pair: [1, "a"],
  empty: [],
  byName: { x: 1.5 },
  byId: { "1": "a" },
  byColor: { green: 1 },
  byPriority: { "1": 1 },
  byLetter: { x: 1 },
  when: "2024-01-01T00:00:00",
  aware: "2024-01-01T00:00:00Z",
  day: "2024-01-01",
  at: "12:00:00",
  took: "P1D",
  uid: "00000000-0000-0000-0000-000000000000",
  amount: "1.50",
  blob: "AAEC",
  anything: { any: ["thing"] },
  raw: 1,
  userId: 7,
};
client.send.everything(everything);
client.send.everything({ ...everything, "content-type": "text/html" });

// Receiving: received shapes have every defaulted field.
const unsubscribe = client.on("chat", (m: ChatMessage) => {
  const tags: string[] = m.tags;
  const color: Color = m.color;
  const reply: number | null = m.reply_to;
  const edited: boolean | undefined = m.edited; // UNSET: may be missing
  void [tags, color, reply, edited];
});
unsubscribe();
unsubscribe(); // a second call does nothing
client.on("presence", (p) => {
  const room: string = p.room;
  const reason: string | null = p.type === "Leave" ? p.reason : null;
  void [room, reason];
});
client.on("pet", (p) => {
  const good: boolean = p.kind === 2 ? p.good : false;
  void good;
});
client.on("tree", (t: Tree) => {
  const first: number | undefined = t.children[0]?.value;
  void first;
});
client.on("blob", (b) => {
  const size: number = b.byteLength;
  void size;
});
client.on("note", (text) => void text.toUpperCase());
client.on("status", (s) => {
  const on: boolean = s === "on";
  void on;
});
client.on("moved", ([x, y]) => void (x + y));
client.on("span", ([start, end]) => void (end - start));
client.on("profile", (p: Profile) => {
  const age: number = p.age;
  const initial: string = p.initial; // a computed field: only in the received shape
  const friends: Profile[] = p.friends;
  void [age, initial, friends];
});
client.on("paction", (a) => void (a.type === "join" ? a.room : "left"));
client.on("everything", (e) => {
  const contentType: string = e["content-type"];
  const high: number | undefined = e.byPriority["2"];
  const red: number | undefined = e.byColor.red;
  void [contentType, high, red];
});
client.on("sparse", (s) => {
  const a: number | undefined = s.a;
  void a;
});
client.on("options", (o) => void (o.level ?? 0));
client.on("box", (b) => void (b.width * b.height));
client.on("page", (p) => void p.items.join());
client.on("other-message", (m) => void m.urgent);

// Calls: the reply is the handler's return value, typed in the shape the client receives.
async function calls(): Promise<void> {
  const sum: AddResult = await client.call.add({ a: 1 }); // b has a default
  const total: number = sum.sum + sum.note.length; // received: every field present
  const upper: string = await client.call.upper("tea");
  const reversed: ArrayBuffer = await client.call.reverse(new Uint8Array([1, 2]));
  const profile: Profile = await client.call.whois("ann");
  const initial: string = profile.initial;
  const options: CallOptions = { timeout: 1000 };
  const count: number = await client.call.count([1, 2], options);
  const acknowledged: null = await client.call.chat(message); // a handler that returns None
  const pong: null = await client.call.ping();
  await client.call.ping(null, { timeout: 10 });
  const untyped: unknown = await client.call.anything(new Blob(["x"]));
  const answer: Answer = await client.call.ask_confirm("tea?");
  const signed: ArrayBuffer = await client.call.ask_sign(new ArrayBuffer(2));
  try {
    await client.call.refuse("kitchen");
  } catch (error) {
    const failure = error as CallError;
    const name: "CallTimeout" | "ServerError" | "Disconnected" | "TooManyCalls" = failure.name;
    const code: string = failure.code; // the server's code for a ServerError: "not_found"
    const data: unknown = failure.data;
    const event: string = failure.event;
    void [name, code, data, event, failure.message];
  }
  void [total, upper, reversed, initial, count, acknowledged, pong, untyped, answer, signed];
}
void calls;

// Answering the server's calls: the handler's return value is the reply, in the shape the client sends.
const offConfirm = client.handle.confirm(async (q: Question) => ({ yes: q.text.length > 0 })); // reason left out
offConfirm();
offConfirm(); // a second call does nothing
const full: AnswerInput = { yes: false, reason: "no" };
client.handle.confirm(() => full);
client.handle.greet((who: string) => "hello " + who);
client.handle.sign(async (data: ArrayBuffer) => new Uint8Array(data).reverse());
client.handle.sign(() => new Blob(["x"]));
client.handle.rate(() => ({ starCount: 5 }));
client.handle.poke(() => {}); // a null reply may be left out
client.handle.poke(async (n: number) => void n);
client.handle.poke(() => null);
client.handle.confirm(() => {
  throw Object.assign(new Error("later"), { code: "busy", data: { retry: 5 } });
});

// Errors, the contract check, state.
client.onServerError((error: ServerError) => {
  const code: "invalid_payload" | "handler_error" = error.code;
  void [code, error.event, error.detail];
});
client.onReloadNeeded((info: ReloadNeeded) => void info.closeCode);
client.onContractMismatch((mismatch: ContractMismatch) => void mismatch.serverContract.length);
client.onError((error) => void (error.code === "reload_needed" ? error.closeCode : error.message));
client.onConnect(() => void client.id);
client.onDisconnect((event) => void event.code);
const status: ContractStatus = client.contractStatus;
const contract: string = CONTRACT;
const serverContract: string | null = client.serverContract;
const connected: boolean = client.connected;
client.raw.emit("anything", { untyped: true });
client.close();
void [sent, status, contract, serverContract, connected];
