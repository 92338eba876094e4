// expect TS2339: an event the server does not handle cannot be called
import { connect } from "../generated/ss.client.js";

void connect("ws://127.0.0.1:1/socket").call.nope(1);
