// Types for the typed runtime (ss-typed.js / ss-typed.mjs), generic over a contract's event maps.
//
// `C` maps each event the client sends to its payload type, `S` each event it receives. `CR` maps each
// event the client may call to the server's reply, `SR` each event the server calls to the client's
// reply. A module made by `typed-ss gen-client` declares the four maps (ClientToServerEvents,
// ServerToClientEvents, ClientToServerReplies, ServerToClientReplies) and instantiates these types with
// them, so the API is written once, here. `P`, in the presence API, is the server's presence payload type.
// Declared structurally: no DOM lib is needed.

import SS = require("./ss.js");

/** How an event's payload is framed: JSON text, raw text, or a binary frame. */
export type Kind = "json" | "text" | "binary";

/** Binary payloads a client can send. */
export type BinaryOut = ArrayBuffer | ArrayBufferView | BlobLike;
/** Binary payloads a client receives. */
export type BinaryIn = ArrayBuffer;
/** What is read from a Blob (declared structurally, so no DOM lib is needed). */
export interface BlobLike {
  readonly size: number;
  arrayBuffer(): Promise<ArrayBuffer>;
}

/** The arguments after the event name: the payload, which may be left out when it is `null`. */
export type PayloadArgs<C, E extends keyof C> = C[E] extends null ? [payload?: null] : [payload: C[E]];

/** `emit(event, payload)` arguments; distributive, so an event-name union cannot mix payloads. */
export type EmitArgs<C, E extends keyof C = keyof C> = {
  [K in E]: [event: K, ...payload: PayloadArgs<C, K>];
}[E];

/** Removes the listener it was returned for; calling it again does nothing. */
export type Unsubscribe = () => void;

/** A call's options: `timeout` in ms (default 5000), after which it fails with `CallTimeout`. */
export type CallOptions = SS.CallOptions;

/**
 * How a call failed, its `name` says: `CallTimeout`, `ServerError` (an error reply: the server's `code`,
 * `message` and `data`), `Disconnected` or `TooManyCalls`. A call that was not sent at all (a payload with no
 * JSON form, a frame over the server's limit) fails with an `SS.SSError` instead (`bad_data`, `too_big`).
 */
export type CallError = SS.CallError;

/** `call.<event>(payload, options?)` arguments: the payload, which may be left out when it is `null`. */
export type CallArgs<C, E extends keyof C> = C[E] extends null
  ? [payload?: null, options?: CallOptions]
  : [payload: C[E], options?: CallOptions];

/** A reply a handler may give: `R`, or nothing when `R` allows `null` (sent as `null`). */
export type Reply<R> = null extends R ? R | void : R;

/** Answers a call of the server: the reply, or a promise of it; a throw or a rejection is an error reply. */
export type CallHandler<P, R> = (payload: P) => Reply<R> | PromiseLike<Reply<R>>;

/** An `__error` frame: the server could not decode, or failed to handle, a payload this client sent. */
export interface ServerError<E = string> {
  /** The event whose payload failed. */
  event: E;
  /** `invalid_payload`: the payload did not validate; `handler_error`: the handler raised. */
  code: "invalid_payload" | "handler_error";
  /** What was wrong (for `invalid_payload`, the validator's message with a JSON path). */
  detail: string;
}

/** "current": the server has this client's contract; "stale": it has another; "unknown": no `__hello` yet. */
export type ContractStatus = "unknown" | "current" | "stale";

/** The server's contract differs from the one this client was generated from. */
export interface ContractMismatch {
  clientContract: string;
  serverContract: string;
}

/** The server refused this client as out of date (close code 4010): reload the page to get the new one. */
export interface ReloadNeeded {
  code: "reload_needed";
  /** The close code, 4010. */
  closeCode: number;
  clientContract: string;
  /** The server's contract from its `__hello`, when it arrived before the close. */
  serverContract: string | null;
}

/**
 * A `__presence` event: a member of a tracked room this client is in joined or left, on any of the server's
 * instances. `P` is the server's presence payload type (`Server(presence=Presence(P, ...))`).
 */
export type PresenceEvent<P> = SS.Presence<P>;
/** One member of a room, as `members(room)` lists it. */
export type Member<P> = SS.Member<P>;
/** What `members(room)` resolves with (the server's reply to a `__members` call). */
export type Members<P> = SS.Members<P>;

/**
 * The presence API (a server with `presence=` on): the joins and leaves of the tracked rooms this client is
 * in, and the members of a room, as far as the server lets this client see them.
 */
export interface PresenceClient<P> {
  /** Adds a listener for `__presence` events; any number. */
  onPresence(listener: (event: PresenceEvent<P>) => void): Unsubscribe;
  /**
   * Lists the members of `room` on every instance (a `__members` call). Rejects as calls do; a `ServerError`
   * with code `forbidden` when the server does not let this client list the room (by default: it is not a
   * member), `unknown_event` when the server has no presence.
   */
  members(room: string, options?: CallOptions): Promise<Members<P>>;
}

/** A client typed by the server's contract, over the plain ss.js client. */
export interface TypedClient<C, S, CR = {}, SR = {}> {
  /** The plain ss.js client underneath, untyped. `raw.on(...)` for an event this client listens to replaces its listeners. */
  readonly raw: SS;
  /** The fingerprint of the contract this client was generated from; sent as `ss_contract` when connecting. */
  readonly contract: string;
  /** The server's contract fingerprint from its last `__hello`; null before the first one. */
  readonly serverContract: string | null;
  /** Whether the server's contract is this client's. */
  readonly contractStatus: ContractStatus;
  /** True while connected; emits made while not connected are queued (see ss.js). */
  readonly connected: boolean;
  /** The socket id from the server's `__hello`; null while not connected. */
  readonly id: string | null;
  /** Sends an event with its payload, framed as the server expects it. Returns false when not sent or queued. */
  emit<E extends keyof C>(...args: EmitArgs<C, E>): boolean;
  /** One sender per event: `client.send.chat(message)`. */
  readonly send: { readonly [E in keyof C]: (...payload: PayloadArgs<C, E>) => boolean };
  /**
   * One caller per event the server handles: `await client.call.add({a: 1, b: 2})` sends the payload as
   * `send` does and resolves with the handler's return value (`null` for a handler that returns None).
   * Rejects with a `CallError` (`CallTimeout`, `ServerError`, `Disconnected`, `TooManyCalls`); never queued.
   */
  readonly call: { readonly [E in keyof C & keyof CR]: (...args: CallArgs<C, E>) => Promise<CR[E]> };
  /**
   * One registration per event the server calls (`ss.event(name, T, reply=R)`): `client.handle.confirm(async
   * (q) => answer)`. The handler's return value is the reply; a throw is an error reply with the error's
   * `code` (default `handler_error`), `message` and `data`. One handler per event: a second replaces the
   * first. A call of an event without a handler is answered with `unknown_event`.
   */
  readonly handle: { readonly [E in keyof S & keyof SR]: (handler: CallHandler<S[E], SR[E]>) => Unsubscribe };
  /** Adds a listener for a server event; any number per event. */
  on<E extends keyof S>(event: E, listener: (payload: S[E]) => void): Unsubscribe;
  /** Called on every successful connection (and reconnection). */
  onConnect(listener: () => void): Unsubscribe;
  /** Called once per connected -> disconnected transition, with the close event. */
  onDisconnect(listener: (event: SS.CloseEventLike) => void): Unsubscribe;
  /** Every error the client reports (see ss.js); without a listener they are logged with console.error. */
  onError(listener: (error: SS.SSError) => void): Unsubscribe;
  /** `__error` frames from the server, typed. They reach onError too. */
  onServerError(listener: (error: ServerError<keyof C>) => void): Unsubscribe;
  /** The server's `__hello` carries another contract than this client's: the page is out of date. */
  onContractMismatch(listener: (mismatch: ContractMismatch) => void): Unsubscribe;
  /** The server closed with 4010 (after the onDisconnect listeners): this client is out of date and does not reconnect. */
  onReloadNeeded(listener: (info: ReloadNeeded) => void): Unsubscribe;
  /**
   * After each reconnect: `recovered` when the server took this client's session up (same id, same rooms,
   * every event missed meanwhile delivered first); otherwise it starts afresh (connection state recovery).
   */
  onReconnect(listener: (event: SS.Reconnect) => void): Unsubscribe;
  /** Messages of a room this client is in (`room` null: the broadcasts) were lost between the server's instances. */
  onGap(listener: (gap: SS.Gap) => void): Unsubscribe;
  /** Closes for good (code 1000). */
  close(): void;
}

/**
 * What a generated client knows of its contract: the fingerprint, how each event it sends is framed, and how
 * its reply to each event the server calls is framed.
 */
export interface Contract<C, SR = {}> {
  readonly fingerprint: string;
  readonly kinds: { readonly [E in keyof C]: Kind };
  readonly replyKinds?: { readonly [E in keyof SR]: Kind };
}

/**
 * Connects to a typed-ss server through the plain client (`options` are its options: reconnect, queue,
 * WebSocket class for Node, ...), sending `contract.fingerprint` as the `ss_contract` query parameter.
 * Generated clients call it from their own `connect(url, options)`; `P` is the server's presence payload type
 * (a generated client declares the presence API only when the server has presence on).
 */
export declare function connect<C, S, CR = {}, SR = {}, P = unknown>(
  url: string,
  contract: Contract<C, SR>,
  options?: SS.Options,
): TypedClient<C, S, CR, SR> & PresenceClient<P>;

/** `url` with `ss_contract=<fingerprint>` added to its query string, keeping its parameters and fragment. */
export declare function withContract(url: string, fingerprint: string): string;

/** The WebSocket close code with which the server refuses an out-of-date client. */
export declare const RELOAD_NEEDED_CODE: 4010;
