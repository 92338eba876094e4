// expect TS2322: an answer to the server's call that is not its declared reply
import { connect } from "../generated/ss.client.js";

connect("ws://127.0.0.1:1/socket").handle.confirm(async () => ({ yes: "no" }));
