// expect TS2345: a required field is missing
import { connect } from "../generated/ss.client.js";

connect("ws://127.0.0.1:1/socket").send.chat({ room: "r", text: "hi", author_id: 1 });
