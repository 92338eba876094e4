// expect TS2322: a call's reply used as another type
import { connect } from "../generated/ss.client.js";

export async function sum(): Promise<string> {
  const result: string = await connect("ws://127.0.0.1:1/socket").call.add({ a: 1 });
  return result;
}
