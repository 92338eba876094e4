// Types for typed-ss-client (ss.js / ss.mjs).
//
// `export = SS` describes the CommonJS export; with "esModuleInterop" or a "node16"/"nodenext"/"bundler"
// module resolution, `import SS from "typed-ss-client"` gets the same class, which is what ss.mjs exports as
// its default. The event shapes are declared here structurally, so no DOM lib is needed.

declare class SS {
  /** Opens the WebSocket at once, offering the subprotocol "sac-sock", with binaryType "arraybuffer". */
  constructor(url: string, opts?: SS.Options);

  readonly url: string;
  /** True while the WebSocket is open and emits go out at once. */
  readonly connected: boolean;
  /** The socket id from the server's `__hello`; null before it arrives and while disconnected. */
  id: string | null;
  /** The server's `max_message_size` (bytes) from `__hello`; null when unknown, and then nothing is checked. */
  maxMessageSize: number | null;
  /** The server's contract fingerprint from `__hello` (see typed-ss gen-client); null when it sent none. */
  contract: string | null;
  /**
   * The server's `max_calls` from `__hello`: the most calls of this client that may wait for a reply at once.
   * null until it arrives, and then nothing is checked.
   */
  maxCalls: number | null;
  /** The reconnect options in force (defaults merged with the ones given). `close()` sets `enabled` to false. */
  reconnectOpts: SS.ResolvedReconnectOptions;

  /** A function that does nothing, handy to clear a callback. */
  noop(): void;

  /** Called on every successful open (only the first one when `replayOnConnect` is false). One callback. */
  onConnect(cb: (this: SS, event: SS.OpenEvent) => void): this;
  /** Called once per connected -> disconnected transition; never for failed attempts. One callback. */
  onDisconnect(cb: (this: SS, event: SS.CloseEventLike) => void): this;
  /** Called for every problem the client handles itself (see SS.ErrorCode); the default logs to console.error. */
  onError(cb: (this: SS, error: SS.SSError) => void): this;
  /** Called with each `__hello` payload, after id, maxMessageSize and contract are set. One callback. */
  onHello(cb: (this: SS, hello: SS.Hello) => void): this;
  /** After each reconnect, once the server's __hello arrived: whether the server took the session up. */
  onReconnect(cb: (this: SS, event: SS.Reconnect) => void): this;
  /** When messages of a room this client is in were lost between the server's instances (__gap). */
  onGap(cb: (this: SS, gap: SS.Gap) => void): this;
  /**
   * When a member of a tracked room this client is in joined or left, on any of the server's instances
   * (`__presence`, from a server with `presence=` on). One callback.
   */
  onPresence<P = unknown>(cb: (this: SS, event: SS.Presence<P>) => void): this;
  /**
   * One handler per event name (a second call replaces the first). data is a string for S frames, an
   * ArrayBuffer for B frames, the parsed value for J frames.
   */
  on<T = any>(event: string, cb: (this: SS, data: T) => void): this;
  off(event: string): this;

  /**
   * Sends an event: ArrayBuffer, typed arrays and DataView as a binary frame, strings as text, no data as an
   * empty payload, anything else as JSON text. While not connected the emit is queued (up to `maxQueue`)
   * unless `opts.volatile` is set. Returns true when sent or queued, false when not (the reason goes to onError).
   */
  emit(event: string, data?: unknown, opts?: SS.EmitOptions): boolean;

  /**
   * Calls the server's handler for `event` and resolves with its return value, decoded as `on` handlers receive
   * data (the parsed value for J, a string for S, an ArrayBuffer for B). `data` is sent as `emit` sends it.
   * Never queued. Rejects with an `SS.CallError` whose `name` says what happened: `CallTimeout` (no reply within
   * `opts.timeout` ms, default 5000), `ServerError` (an error reply: `code`, `message`, `data`), `Disconnected`
   * (not connected, or the connection closed first), `TooManyCalls` (`maxCalls` calls already wait); or, when
   * nothing was sent, with an `SS.SSError` (`bad_event`, `bad_data`, `too_big`, `send_failed`). Failed calls
   * are not reported to onError: the promise carries them.
   */
  call<T = any>(event: string, data?: unknown, opts?: SS.CallOptions): Promise<T>;
  /**
   * Answers the server's calls of `event` (one handler per event; a second call replaces the first). The
   * handler gets the data as `on` handlers do, and its return value (or what its promise resolves to) is the
   * reply: a string as text, an ArrayBuffer or typed array as binary, anything else as JSON (`undefined` as
   * `null`). A throw or a rejection is an error reply `{code: err.code || "handler_error", message: err.message,
   * data: err.data}`. A call of an event without a handler is answered with the error `unknown_event`.
   */
  onCall<T = any>(event: string, handler: (this: SS, data: T) => unknown): this;
  /** Removes the onCall handler: later calls of `event` are answered with `unknown_event`. */
  offCall(event: string): this;

  /**
   * Lists the members of `room` on every instance of the server: a call of `__members` (a server with
   * `presence=` on), which rejects as `call` does: a `ServerError` with code `forbidden` when the server does
   * not let this client list the room (by default: it is not in it), `unknown_event` without presence; an
   * `SSError` `bad_data` when `room` is not a non-empty string.
   */
  members<P = unknown>(room: string, opts?: SS.CallOptions): Promise<SS.Members<P>>;

  /** Closes with 1000 for good: cancels a pending reconnect, drops queued emits (reported as "closed") and fails waiting calls (`Disconnected`). */
  close(): void;
}

declare namespace SS {
  /** The WebSocket subprotocol, "sac-sock". */
  const SUBPROTOCOL: "sac-sock";
  /** The timeout of a call when its options give none, in ms: 5000. */
  const DEFAULT_CALL_TIMEOUT: number;

  interface ReconnectOptions {
    /** Reconnect after a close whose code allows it. Default true. */
    enabled?: boolean;
    /** Call onConnect again on every reconnect, not only the first connection. Default true. */
    replayOnConnect?: boolean;
    /** The backoff base in ms (the original's fixed interval). Default 1000. */
    intervalMS?: number;
    /** Same as intervalMS; wins when both are given. */
    base?: number;
    /** The longest wait in ms. Default 30000. */
    cap?: number;
    /** The growth per failed attempt. Default 2. */
    factor?: number;
    /** The backoff starts over only after a connection stayed open this long, in ms. Default 5000; 0 resets on every open. */
    resetAfterMS?: number;
    /** Extra close codes after which to reconnect (overrides the built-in "do not reconnect" codes). */
    reconnectCodes?: number[];
  }

  interface ResolvedReconnectOptions {
    enabled: boolean;
    replayOnConnect: boolean;
    intervalMS: number;
    base: number;
    cap: number;
    factor: number;
    resetAfterMS: number;
    reconnectCodes: number[];
  }

  interface Options {
    reconnectOpts?: ReconnectOptions;
    /** How many emits to hold while not connected; the oldest is dropped beyond it. Default 1000; 0 disables. */
    maxQueue?: number;
    /** The WebSocket class to use; default the global WebSocket. In Node, pass the `ws` package's class. */
    WebSocket?: WebSocketConstructor;
    /** The random source for the backoff jitter, in [0, 1). Default Math.random. */
    random?: () => number;
    /** Timer functions for the backoff (tests inject fakes). Default the global ones. */
    setTimeout?: (fn: () => void, ms: number) => unknown;
    clearTimeout?: (handle: any) => void;
    /** The clock in ms for resetAfterMS (tests inject a fake). Default performance.now, else Date.now. */
    now?: () => number;
  }

  interface EmitOptions {
    /** Never queue: drop the emit (reporting "not_connected") when not connected. */
    volatile?: boolean;
  }

  interface CallOptions {
    /**
     * How long to wait for the reply, in ms; then the call fails with `CallTimeout` (a late reply is dropped).
     * Default `SS.DEFAULT_CALL_TIMEOUT` (5000). `Infinity` waits until the connection closes.
     */
    timeout?: number;
  }

  /**
   * What made a call fail: `CallTimeout` (no reply in time), `ServerError` (an error reply), `Disconnected` (not
   * connected, or the connection closed before the reply), `TooManyCalls` (the server's `max_calls` calls wait).
   */
  type CallErrorName = "CallTimeout" | "ServerError" | "Disconnected" | "TooManyCalls";

  /** The original client's option type names, kept so old code still compiles. */
  type connOpts = ReconnectOptions;
  type ssOpts = Options;

  interface OpenEvent {
    readonly type: string;
  }

  interface CloseEventLike {
    readonly code: number;
    readonly reason: string;
    readonly wasClean?: boolean;
  }

  /** What the client needs from a WebSocket; the browser's and the `ws` package's both fit. */
  interface WebSocketLike {
    readonly readyState: number;
    binaryType: string;
    onopen: ((event: any) => void) | null;
    onclose: ((event: any) => void) | null;
    onmessage: ((event: any) => void) | null;
    onerror: ((event: any) => void) | null;
    send(data: string | ArrayBuffer): void;
    close(code?: number, reason?: string): void;
  }

  type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

  type ErrorCode =
    /** A `__error` frame from the server: see serverCode, event, detail, payload. */
    | "server_error"
    /** A server frame with no 0x02 or no event name, or a reserved event with a bad payload. */
    | "bad_frame"
    /** A J payload that is not valid JSON. */
    | "bad_json"
    /** An onConnect, onDisconnect or `on` handler threw, or an onCall handler failed without a `code`; see cause. */
    | "callback_error"
    /** emit, call: the event name is empty, not a string, or contains 0x01/0x02. */
    | "bad_event"
    /** emit, call, an onCall reply: the data has no JSON form (cycles, BigInt, functions, symbols); call: a bad timeout. */
    | "bad_data"
    /** emit, call, an onCall reply: the frame is larger than maxMessageSize; see size and limit. */
    | "too_big"
    /** emit: a volatile emit (or any emit with maxQueue 0) while not connected. */
    | "not_connected"
    /** The queue was full; the oldest emit (event, data) was dropped. */
    | "queue_overflow"
    /** emit after close, or queued emits dropped because the client closed for good (see dropped). */
    | "closed"
    /** WebSocket.send threw. */
    | "send_failed"
    /** An attempt to connect failed before opening (see closeCode, or cause). */
    | "connect_failed"
    /** The server closed with 1009: a message was too big. The client still reconnects. */
    | "message_too_big"
    /** The server closed with 4010: the client was generated from another contract; reload the page. No reconnect. */
    | "reload_needed"
    /** A bug in the client itself while handling a frame. */
    | "internal_error";

  /** `Code` is the type of `code`: an ErrorCode for what reaches onError, any string for a CallError. */
  class SSError<Code extends string = ErrorCode> extends Error {
    constructor(code: Code, message: string, fields?: object);
    /** "SSError", or for a CallError what made the call fail. */
    readonly name: string;
    readonly code: Code;
    /** The event involved: the emitted or received event, the server's payload.event, or the callback name. */
    readonly event?: string;
    /** The data that was not sent, or the frame or payload that could not be read. */
    readonly data?: unknown;
    /** The underlying exception. */
    readonly cause?: unknown;
    /** server_error: the server's code ("invalid_payload", "handler_error", ...). */
    readonly serverCode?: string;
    /** server_error: the server's detail text. */
    readonly detail?: string;
    /** server_error: the whole `__error` payload. */
    readonly payload?: ServerErrorPayload;
    /** too_big: the frame size and the limit, in bytes. */
    readonly size?: number;
    readonly limit?: number;
    /** connect_failed, message_too_big, reload_needed: the WebSocket close code. */
    readonly closeCode?: number;
    /** closed: the queued emits that were dropped. */
    readonly dropped?: Array<{ event: string; data: unknown }>;
  }

  /**
   * How a call failed (the rejection of `call`). `name` says what happened; `code` is `"timeout"`,
   * `"disconnected"`, `"too_many_calls"`, or for a `ServerError` the server's code: `"invalid_payload"`,
   * `"handler_error"`, `"unknown_event"`, `"too_many_calls"`, `"invalid_reply"` (an error reply that does
   * not parse) or the application's own (`typed_ss.HandlerError`).
   */
  class CallError extends SSError<string> {
    constructor(name: CallErrorName, code: string, message: string, event: string, data?: unknown);
    readonly name: CallErrorName;
    /** The event that was called. */
    readonly event: string;
    /** ServerError: the error reply's `data` (the application's details); null otherwise. */
    readonly data: unknown;
  }

  /** The payload of the server's `__hello` frame; servers may add fields. */
  interface Hello {
    v?: number;
    id?: string;
    max_message_size?: number;
    contract?: string;
    max_calls?: number;
    /** The session token, when the server has connection state recovery on. */
    session?: string;
    /** After a reconnect with a token: whether the server took the session up. */
    recovered?: boolean;
    /** The rooms of a recovered session. */
    rooms?: string[];
    /** The tags of a recovered session's streams. */
    streams?: string[];
    [key: string]: unknown;
  }

  interface Reconnect {
    /** Whether the server took this client's session up: same id, same rooms, nothing missed. */
    recovered: boolean;
    /** The rooms of the recovered session; empty when it starts afresh. */
    rooms: string[];
  }

  interface Gap {
    /** The room whose messages were lost; null for the broadcasts. */
    room: string | null;
    /** How many. */
    lost: number;
  }

  /** A `__presence` event; `P` is the server's presence payload type. */
  interface Presence<P = unknown> {
    /** The room a member joined or left. */
    room: string;
    change: "joined" | "left";
    /** The id of the socket that joined or left (per identity: the identity's first to join, last to leave). */
    socket: string;
    /** That member's presence payload; null when it has none. */
    presence: P | null;
  }

  /** One member of a room, as `members(room)` lists it. */
  interface Member<P = unknown> {
    /** Its socket id. */
    socket: string;
    /** The id of the server instance it is connected to. */
    instance: string;
    /** Its presence payload; null when it has none. */
    presence: P | null;
  }

  /** What `members(room)` resolves with. */
  interface Members<P = unknown> {
    /** The room's members on every instance that answered. */
    members: Member<P>[];
    /** The instances that did not answer in time: their members are not listed. */
    missing: string[];
    /** More members than the server lists at once (its `max_listed`): some were left out. */
    truncated: boolean;
  }

  interface ServerErrorPayload {
    event: string;
    code: string;
    detail: string;
    [key: string]: unknown;
  }
}

export = SS;
