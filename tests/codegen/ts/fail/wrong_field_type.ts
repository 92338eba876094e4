// expect TS2322: a field of the wrong type
import { connect } from "../generated/ss.client.js";

connect("ws://127.0.0.1:1/socket").send.chat({ room: 1, text: "hi", author_id: 1, sent_at: "x" });
