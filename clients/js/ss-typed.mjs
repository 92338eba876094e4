// ES module entry for the typed runtime (ss-typed.js). As with ss.mjs, the implementation lives in
// ss-typed.js only: ss.mjs is imported first, so ss.js has run, then ss-typed.js runs and leaves its API
// in a well-known global slot that this file reads. Works with <script type="module"> and Node's `import`.
import "./ss.mjs";
import "./ss-typed.js";

const root =
  typeof window !== "undefined" ? window : typeof self !== "undefined" ? self : globalThis;
/** @type {typeof import("./ss-typed.js")} */
const typed = /** @type {any} */ (root)[Symbol.for("typed-ss-client/typed")];

export const connect = typed.connect;
export const withContract = typed.withContract;
export const RELOAD_NEEDED_CODE = typed.RELOAD_NEEDED_CODE;
