// Runs RPC scenarios with the official Connect / gRPC-Web clients (@connectrpc/connect-node) against a
// gateway URL and prints one JSON result per scenario, for tests/test_js_clients.py to assert.
//
//   node client.mjs <descriptor-set.pb> <base-url> '<JSON list of scenarios>'
//
// The services come from a FileDescriptorSet (protoc --descriptor_set_out --include_imports), loaded
// into a @bufbuild/protobuf registry: no JS code generation. A scenario:
//   {"name": "...", "transport": "grpcweb" | "grpcweb-json" | "connect" | "connect-json" | "connect-get",
//    "service": "shop.v1.ShopService", "method": "GetBook", "request": {<proto JSON>},
//    "headers": {"x-a": "1"}, "timeoutMs": 500, "abortAfterMessages": 1, "abortAfterMs": 100}
// A result: {"name", "ok", "responses": [<proto JSON>...], "headers": {...}, "trailers": {...},
//            "error": {"code": "not_found", "codeNumber": 5, "message", "details": [...], "metadata": {...}}}
import { readFileSync } from "node:fs";
import { fromBinary, toJson, fromJson, createFileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-node";

const [descriptorPath, baseUrl, scenariosJson] = process.argv.slice(2);
const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(descriptorPath)));

function transportFor(kind) {
  const common = { baseUrl, httpVersion: "1.1", jsonOptions: { registry }, useBinaryFormat: true };
  switch (kind) {
    case "grpcweb":
      return createGrpcWebTransport(common);
    case "grpcweb-json":
      return createGrpcWebTransport({ ...common, useBinaryFormat: false });
    case "connect":
      return createConnectTransport(common);
    case "connect-json":
      return createConnectTransport({ ...common, useBinaryFormat: false });
    case "connect-get":
      return createConnectTransport({ ...common, useHttpGet: true });
    case "connect-get-json":
      return createConnectTransport({ ...common, useBinaryFormat: false, useHttpGet: true });
    default:
      throw new Error(`unknown transport ${kind}`);
  }
}

function headersObject(headers) {
  const out = {};
  if (headers) headers.forEach((value, key) => (out[key] = value));
  return out;
}

function errorJson(err) {
  const e = ConnectError.from(err);
  return {
    code: Code[e.code] ? Code[e.code].replace(/([a-z])([A-Z])/g, "$1_$2").toLowerCase() : String(e.code),
    codeNumber: e.code,
    message: e.rawMessage,
    details: e.details.map((d) => {
      if ("desc" in d) return { type: d.desc.typeName };
      const desc = registry.getMessage(d.type);
      return {
        type: d.type,
        debug: desc ? toJson(desc, fromBinary(desc, d.value), { registry }) : null,
      };
    }),
    metadata: headersObject(e.metadata),
  };
}

async function run(scenario) {
  const service = registry.getService(scenario.service);
  if (!service) throw new Error(`no service ${scenario.service} in the descriptor set`);
  const method = service.methods.find((m) => m.name === scenario.method);
  if (!method) throw new Error(`no method ${scenario.method} in ${scenario.service}`);
  const client = createClient(service, transportFor(scenario.transport));
  const call = client[method.localName];
  const request = fromJson(method.input, scenario.request ?? {}, { registry });
  const result = { name: scenario.name, ok: false, responses: [], headers: {}, trailers: {}, error: null };
  const controller = new AbortController();
  if (scenario.abortAfterMs !== undefined) setTimeout(() => controller.abort(), scenario.abortAfterMs);
  const options = {
    headers: scenario.headers ?? {},
    timeoutMs: scenario.timeoutMs,
    signal: controller.signal,
    onHeader: (h) => (result.headers = headersObject(h)),
    onTrailer: (t) => (result.trailers = headersObject(t)),
  };
  const started = Date.now();
  try {
    if (method.methodKind === "unary") {
      const reply = await call(request, options);
      result.responses.push(toJson(method.output, reply, { registry }));
    } else if (method.methodKind === "server_streaming") {
      for await (const reply of call(request, options)) {
        if (controller.signal.aborted) continue; // messages already buffered when the client gave up
        result.responses.push(toJson(method.output, reply, { registry }));
        if (scenario.abortAfterMessages !== undefined && result.responses.length >= scenario.abortAfterMessages) {
          controller.abort();
        }
      }
    } else if (method.methodKind === "client_streaming") {
      const messages = (scenario.requests ?? []).map((r) => fromJson(method.input, r, { registry }));
      async function* input() {
        yield* messages;
      }
      const reply = await call(input(), options);
      result.responses.push(toJson(method.output, reply, { registry }));
    } else {
      throw new Error(`scenario ${scenario.name}: ${method.methodKind} is not driven by this harness`);
    }
    result.ok = true;
  } catch (err) {
    result.error = errorJson(err);
  }
  result.elapsedMs = Date.now() - started;
  return result;
}

const results = [];
for (const scenario of JSON.parse(scenariosJson)) {
  results.push(await run(scenario));
}
process.stdout.write(JSON.stringify(results) + "\n");
