// Componentizes app.js against ../../../wit with componentize-js (SpiderMonkey) and writes
// queue_depth.wasm. Run by build.sh.
import { writeFile } from "node:fs/promises";
import { resolve } from "node:path";
import { componentize } from "@bytecodealliance/componentize-js";

const { component } = await componentize({
  sourcePath: resolve("app.js"),
  witPath: resolve("../../../wit"),
  worldName: "scaling-policy",
  // A policy needs no clocks, randomness, stdio or HTTP from its host.
  disableFeatures: ["random", "stdio", "clocks", "http", "fetch-event"],
});
await writeFile("queue_depth.wasm", component);
