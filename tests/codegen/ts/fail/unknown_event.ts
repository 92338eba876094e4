// expect TS2339: an event the server does not handle
import { connect } from "../generated/ss.client.js";

connect("ws://127.0.0.1:1/socket").send.nope(1);
