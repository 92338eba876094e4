// expect TS2339: an event the server never calls cannot be handled
import { connect } from "../generated/ss.client.js";

connect("ws://127.0.0.1:1/socket").handle.chat(() => null);
