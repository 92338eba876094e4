// expect TS2345: a text event given an object
import { connect } from "../generated/ss.client.js";

connect("ws://127.0.0.1:1/socket").send.say({ text: "hi" });
