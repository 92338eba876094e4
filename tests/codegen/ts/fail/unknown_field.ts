// expect TS2353: a field the payload type does not have
import { connect } from "../generated/ss.client.js";

connect("ws://127.0.0.1:1/socket").send.tree({ value: 1, extra: 2 });
