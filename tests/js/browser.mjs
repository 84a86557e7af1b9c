// The browser side of tests/test_js_clients.py's Chromium test, bundled by esbuild into one script:
// @connectrpc/connect-web's gRPC-Web (and Connect) transports against the page's own origin, the
// services from /descriptors.pb, the results POSTed to /result as JSON.
import { fromBinary, toJson, fromJson, createFileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorSetSchema } from "@bufbuild/protobuf/wkt";
import { createClient, ConnectError, Code } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";

async function main() {
  const bytes = new Uint8Array(await (await fetch("/descriptors.pb")).arrayBuffer());
  const registry = createFileRegistry(fromBinary(FileDescriptorSetSchema, bytes));
  const shop = registry.getService("shop.v1.ShopService");
  const feed = registry.getService("shop.v1.FeedService");
  const results = {};
  for (const [name, transport] of [
    ["grpcweb", createGrpcWebTransport({ baseUrl: location.origin, jsonOptions: { registry } })],
    ["grpcweb-binary", createGrpcWebTransport({ baseUrl: location.origin, useBinaryFormat: true })],
    ["connect", createConnectTransport({ baseUrl: location.origin, jsonOptions: { registry } })],
  ]) {
    const s = createClient(shop, transport);
    const f = createClient(feed, transport);
    const out = {};
    const book = await s.getBook(fromJson(shop.method.getBook.input, { name: "shelves/fiction/books/dune" }));
    out.title = book.title;
    let headers = {};
    let trailers = {};
    await s.echoMetadata(fromJson(shop.method.echoMetadata.input, { note: "n" }), {
      headers: { "x-user": "browser" },
      onHeader: (h) => h.forEach((v, k) => (headers[k] = v)),
      onTrailer: (t) => t.forEach((v, k) => (trailers[k] = v)),
    });
    out.headers = headers;
    out.trailers = trailers;
    out.events = [];
    for await (const event of f.watch(fromJson(feed.method.watch.input, { shelf: "shelves/fiction", count: 3 }))) {
      out.events.push(toJson(feed.method.watch.output, event).title);
    }
    try {
      await s.fail(fromJson(shop.method.fail.input, { code: 5, message: "gone", reason: "BOOK_MISSING" }));
      out.error = null;
    } catch (err) {
      const e = ConnectError.from(err);
      out.error = { code: Code[e.code], message: e.rawMessage, details: e.details.map((d) => d.type) };
    }
    results[name] = out;
  }
  return results;
}

main()
  .then((results) => fetch("/result", { method: "POST", body: JSON.stringify({ ok: true, results }) }))
  .catch((err) => fetch("/result", { method: "POST", body: JSON.stringify({ ok: false, error: String(err && err.stack || err) }) }));
