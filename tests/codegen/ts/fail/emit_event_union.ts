// expect TS2345: emit with an event-name union cannot pair one event with another's payload
import { connect } from "../generated/ss.client.js";

declare const event: "say" | "toggle";
connect("ws://127.0.0.1:1/socket").emit(event, "hello");
