// ES module entry for typed-ss-client. The implementation lives in ss.js only: importing it runs it (as a
// module in browsers, through the CommonJS loader in Node), and it leaves the constructor in a well-known
// global slot that this file reads. Works with <script type="module"> and with Node's `import`.
import "./ss.js";

const root =
  typeof window !== "undefined" ? window : typeof self !== "undefined" ? self : globalThis;
/** @type {typeof import("./ss.js")} */
const SS = /** @type {any} */ (root)[Symbol.for("typed-ss-client")];

export default SS;
export { SS };
