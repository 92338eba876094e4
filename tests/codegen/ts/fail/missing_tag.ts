// expect TS2345: a tagged union member without its tag
import { connect } from "../generated/ss.client.js";

connect("ws://127.0.0.1:1/socket").send.pet({ name: "rex" });
