// expect TS2322: a received field used as another type
import { connect } from "../generated/ss.client.js";

connect("ws://127.0.0.1:1/socket").on("chat", (m) => {
  const n: number = m.text;
  void n;
});
