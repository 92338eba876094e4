// expect TS2322: a call's payload of the wrong type
import { connect } from "../generated/ss.client.js";

void connect("ws://127.0.0.1:1/socket").call.add({ a: "1" });
