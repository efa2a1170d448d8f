// R2 conformance worker: the same module runs under Miniflare (tests/miniflare/r2_reference.mjs)
// and on WDL through the R2 rig; each answers a transcript of calls on the bucket bound as B.
// Values are normalised here, identically on both sides: fields that legitimately differ
// (versions, upload ids, part etags, cursors, upload times) are reduced to their shape.

const MiB = 1024 * 1024;

function shape(value) {
  if (value === null) return null;
  if (value === undefined) return "<undefined>";
  if (value instanceof Date) return "<date>";
  if (value instanceof ArrayBuffer) return { arrayBuffer: hex(value) };
  if (Array.isArray(value)) return value.map(shape);
  if (value instanceof Headers) return Object.fromEntries([...value].sort());
  if (typeof value === "object") {
    const out = {};
    for (const k of Object.keys(value).sort()) out[k] = shape(value[k]);
    return out;
  }
  return value;
}

function hex(buf) {
  return [...new Uint8Array(buf)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function obj(o) {
  if (o === null || o === undefined) return o ?? "<undefined>";
  const headers = new Headers();
  o.writeHttpMetadata(headers);
  const out = {
    class: o.constructor.name,
    key: o.key,
    version: typeof o.version === "string" && o.version.length > 0 ? "<version>" : o.version,
    size: o.size,
    etag: o.etag,
    httpEtag: o.httpEtag,
    uploaded: o.uploaded instanceof Date && !isNaN(o.uploaded) ? "<date>" : String(o.uploaded),
    httpMetadata: shape(o.httpMetadata),
    customMetadata: shape(o.customMetadata),
    range: shape(o.range),
    checksums: shape(o.checksums.toJSON()),
    checksumsMd5: o.checksums.md5 === undefined ? "<none>" : hex(o.checksums.md5),
    storageClass: o.storageClass,
    written: shape(headers),
    hasBody: "body" in o,
  };
  return out;
}

async function withBody(o) {
  if (o === null) return null;
  const out = obj(o);
  if ("body" in o) {
    out.bodyUsedBefore = o.bodyUsed;
    out.text = await o.text();
    out.bodyUsedAfter = o.bodyUsed;
  }
  return out;
}

function list(result) {
  return {
    objects: result.objects.map(obj),
    truncated: result.truncated,
    cursor: result.cursor === undefined ? "<none>" : typeof result.cursor,
    delimitedPrefixes: result.delimitedPrefixes,
  };
}

function bytes(n, seed) {
  const a = new Uint8Array(n);
  for (let i = 0; i < n; i++) a[i] = (i * 31 + seed) & 0xff;
  return a;
}

async function sha256hex(data) {
  return hex(await crypto.subtle.digest("SHA-256", data));
}

async function run(B) {
  const calls = [];
  async function step(name, fn) {
    try {
      calls.push({ name, ok: true, value: shape(await fn()) });
    } catch (e) {
      calls.push({ name, ok: false, error: { name: e?.name, message: String(e?.message) } });
    }
  }
  const past = new Date(Date.now() - 3600_000);
  const future = new Date(Date.now() + 3600_000);
  let etagA;

  await step("put string with metadata", async () => {
    const o = await B.put("a.txt", "hello world", {
      httpMetadata: { contentType: "text/plain", cacheControl: "max-age=60", contentLanguage: "en" },
      customMetadata: { owner: "ana", n: "1" },
    });
    etagA = o.etag;
    return obj(o);
  });
  await step("head", async () => obj(await B.head("a.txt")));
  await step("get text", async () => withBody(await B.get("a.txt")));
  await step("get missing", async () => B.get("missing"));
  await step("head missing", async () => B.head("missing"));
  await step("get range offset+length", async () => withBody(await B.get("a.txt", { range: { offset: 1, length: 3 } })));
  await step("get range offset", async () => withBody(await B.get("a.txt", { range: { offset: 6 } })));
  await step("get range length", async () => withBody(await B.get("a.txt", { range: { length: 4 } })));
  await step("get range suffix", async () => withBody(await B.get("a.txt", { range: { suffix: 3 } })));
  await step("get range headers", async () => withBody(await B.get("a.txt", { range: new Headers({ range: "bytes=2-4" }) })));
  await step("get range header open", async () => withBody(await B.get("a.txt", { range: new Headers({ range: "bytes=8-" }) })));
  await step("get range beyond end", async () => withBody(await B.get("a.txt", { range: { offset: 100 } })));
  await step("get range length past end", async () => withBody(await B.get("a.txt", { range: { offset: 9, length: 50 } })));
  await step("get onlyIf etagMatches ok", async () => withBody(await B.get("a.txt", { onlyIf: { etagMatches: etagA } })));
  await step("get onlyIf etagMatches fails", async () => withBody(await B.get("a.txt", { onlyIf: { etagMatches: "0".repeat(32) } })));
  await step("get onlyIf etagDoesNotMatch fails", async () => withBody(await B.get("a.txt", { onlyIf: { etagDoesNotMatch: etagA } })));
  await step("get onlyIf uploadedBefore fails", async () => withBody(await B.get("a.txt", { onlyIf: { uploadedBefore: past } })));
  await step("get onlyIf uploadedAfter ok", async () => withBody(await B.get("a.txt", { onlyIf: { uploadedAfter: past } })));
  await step("get onlyIf uploadedAfter fails", async () => withBody(await B.get("a.txt", { onlyIf: { uploadedAfter: future } })));
  await step("get onlyIf headers If-None-Match", async () => withBody(await B.get("a.txt", { onlyIf: new Headers({ "if-none-match": `"${etagA}"` }) })));
  await step("get onlyIf headers If-Match ok", async () => withBody(await B.get("a.txt", { onlyIf: new Headers({ "if-match": `"${etagA}"` }) })));
  await step("get onlyIf headers If-Modified-Since", async () => withBody(await B.get("a.txt", { onlyIf: new Headers({ "if-modified-since": future.toUTCString() }) })));
  await step("put onlyIf etagMatches fails", async () => B.put("a.txt", "nope", { onlyIf: { etagMatches: "0".repeat(32) } }));
  await step("put onlyIf If-None-Match * fails", async () => B.put("a.txt", "nope", { onlyIf: new Headers({ "if-none-match": "*" }) }));
  await step("put onlyIf etagDoesNotMatch * creates", async () => obj(await B.put("created.txt", "new", { onlyIf: { etagDoesNotMatch: "*" } })));
  await step("get after refused puts", async () => (await B.get("a.txt")).text());
  await step("put sha256 ok", async () => obj(await B.put("sum.bin", "checked", { sha256: await sha256hex(new TextEncoder().encode("checked")) })));
  await step("put md5 mismatch", async () => B.put("sum.bin", "other", { md5: "0".repeat(32) }));
  await step("put sha1 as ArrayBuffer mismatch", async () => B.put("sum.bin", "other", { sha1: new Uint8Array(20).buffer }));
  await step("put ArrayBuffer", async () => obj(await B.put("bin/ab", bytes(10, 1).buffer)));
  await step("put view", async () => obj(await B.put("bin/view", new Uint8Array(bytes(16, 2).buffer, 4, 8))));
  await step("put Blob", async () => obj(await B.put("bin/blob", new Blob(["blob", "!"]))));
  await step("put stream", async () => {
    const { readable, writable } = new FixedLengthStream(6);
    const w = writable.getWriter();
    w.write(new TextEncoder().encode("stre")); w.write(new TextEncoder().encode("am")); w.close();
    return obj(await B.put("bin/stream", readable));
  });
  await step("put stream of unknown length", async () => {
    const { readable, writable } = new TransformStream();
    const w = writable.getWriter();
    w.write(new TextEncoder().encode("unknown")); w.close();
    return obj(await B.put("bin/unknown", readable));
  });
  await step("delete unknown-length object", async () => B.delete("bin/unknown"));
  await step("put Blob stream", async () => obj(await B.put("bin/blobstream", new Blob(["bs"]).stream())));
  await step("put null", async () => obj(await B.put("bin/empty", null)));
  await step("get empty", async () => withBody(await B.get("bin/empty")));
  await step("put Headers httpMetadata", async () => obj(await B.put("hdr.txt", "h", {
    httpMetadata: new Headers({ "content-type": "text/html", "content-disposition": "inline", "content-encoding": "identity", "cache-control": "no-cache", expires: "Wed, 21 Oct 2037 07:28:00 GMT" }),
  })));
  await step("get json", async () => { await B.put("j.json", '{"a":[1,2]}'); return (await B.get("j.json")).json(); });
  await step("get arrayBuffer", async () => (await B.get("bin/ab")).arrayBuffer());
  await step("get blob", async () => { const b = await (await B.get("bin/blob")).blob(); return { size: b.size, type: b.type, text: await b.text() }; });
  await step("body used twice", async () => { const o = await B.get("a.txt"); await o.text(); return o.text(); });
  await step("put key too long", async () => B.put("k".repeat(1025), "x"));
  await step("put metadata too large", async () => B.put("m", "x", { customMetadata: { k: "v".repeat(2048) } }));
  await step("get key too long", async () => B.get("k".repeat(1025)));
  await step("list all", async () => list(await B.list()));
  await step("list prefix", async () => list(await B.list({ prefix: "bin/" })));
  await step("list delimiter", async () => list(await B.list({ delimiter: "/" })));
  await step("list prefix+delimiter", async () => list(await B.list({ prefix: "bin/", delimiter: "/" })));
  let cursor;
  await step("list limit page 1", async () => { const r = await B.list({ limit: 3 }); cursor = r.cursor; return list(r); });
  await step("list cursor page 2", async () => list(await B.list({ limit: 3, cursor })));
  await step("list startAfter", async () => list(await B.list({ startAfter: "bin/view" })));
  await step("list include", async () => list(await B.list({ prefix: "a", include: ["httpMetadata", "customMetadata"] })));
  await step("list include http only", async () => list(await B.list({ prefix: "a", include: ["httpMetadata"] })));
  await step("list limit 0", async () => list(await B.list({ limit: 0 })));
  await step("list limit 1001", async () => list(await B.list({ limit: 1001 })));
  await step("delete one", async () => B.delete("created.txt"));
  await step("delete bulk", async () => B.delete(["bin/ab", "bin/view", "never"]));
  await step("list after delete", async () => list(await B.list({ prefix: "bin/" })));

  let upload;
  const part1 = bytes(5 * MiB, 3);
  const part2 = bytes(1234, 4);
  let e1, e2;
  await step("mpu create", async () => {
    upload = await B.createMultipartUpload("mpu/obj", { httpMetadata: { contentType: "application/x-test" }, customMetadata: { m: "1" } });
    return { key: upload.key, uploadId: typeof upload.uploadId, class: upload.constructor.name };
  });
  await step("mpu upload part 1", async () => { e1 = await upload.uploadPart(1, part1); return { partNumber: e1.partNumber, etag: typeof e1.etag }; });
  await step("mpu upload part 2 string", async () => { e2 = await upload.uploadPart(2, "tail-of-upload"); return { partNumber: e2.partNumber, etag: typeof e2.etag }; });
  await step("mpu complete wrong etag", async () => obj(await upload.complete([e1, { partNumber: 2, etag: "bogus" }])));
  await step("mpu resume + complete", async () => obj(await B.resumeMultipartUpload("mpu/obj", upload.uploadId).complete([e1, e2])));
  await step("mpu get", async () => { const o = await B.get("mpu/obj"); const b = new Uint8Array(await o.arrayBuffer()); return { size: b.length, sha: await sha256hex(b), ct: o.httpMetadata.contentType, m: o.customMetadata.m }; });
  await step("mpu get range across parts", async () => { const o = await B.get("mpu/obj", { range: { offset: 5 * MiB - 2, length: 6 } }); return new TextDecoder("latin1").decode(await o.arrayBuffer()).length; });
  await step("mpu upload after complete", async () => upload.uploadPart(3, "late"));
  let small;
  await step("mpu small parts", async () => {
    small = await B.createMultipartUpload("mpu/small");
    const p1 = await small.uploadPart(1, "tiny");
    const p2 = await small.uploadPart(2, "end");
    return obj(await small.complete([p1, p2]));
  });
  await step("mpu abort", async () => small.abort());
  await step("mpu upload after abort", async () => small.uploadPart(1, "x"));
  await step("mpu unequal parts", async () => {
    const u = await B.createMultipartUpload("mpu/uneven");
    const p1 = await u.uploadPart(1, part1);
    const p2 = await u.uploadPart(2, bytes(5 * MiB + 1, 5));
    try { return obj(await u.complete([p1, p2])); } finally { await u.abort(); }
  });
  await step("mpu single small part", async () => {
    const u = await B.createMultipartUpload("mpu/one");
    const p1 = await u.uploadPart(1, part2);
    return obj(await u.complete([p1]));
  });
  await step("mpu create key too long", async () => B.createMultipartUpload("k".repeat(1025)));
  await step("refuse put number value", async () => B.put("bad", 123));
  await step("refuse put object value", async () => B.put("bad", { a: 1 }));
  await step("refuse range negative offset", async () => B.get("a.txt", { range: { offset: -1 } }));
  await step("refuse range zero suffix", async () => B.get("a.txt", { range: { suffix: 0 } }));
  await step("refuse range zero length", async () => B.get("a.txt", { range: { offset: 0, length: 0 } }));
  await step("refuse range suffix with offset", async () => B.get("a.txt", { range: { offset: 1, suffix: 2 } }));
  await step("empty range object", async () => withBody(await B.get("a.txt", { range: {} })));
  await step("refuse delete 1001 keys", async () => B.delete(Array.from({ length: 1001 }, (_, i) => `k${i}`)));
  await step("refuse md5 bad length", async () => B.put("bad", "x", { md5: "abc" }));
  await step("refuse two checksums", async () => B.put("bad", "x", { md5: "0".repeat(32), sha1: "0".repeat(40) }));
  await step("refuse include bogus", async () => list(await B.list({ include: ["bogus"] })));
  await step("refuse part number 0", async () => { const u = await B.createMultipartUpload("p0"); return u.uploadPart(0, "x"); });
  await step("refuse part number 10001", async () => { const u = await B.createMultipartUpload("p0"); return u.uploadPart(10001, "x"); });
  await step("refuse resume no upload id", async () => B.resumeMultipartUpload("k"));
  await step("refuse onlyIf bad type", async () => B.get("a.txt", { onlyIf: "nope" }));
  await step("get key coerced", async () => { await B.put(12345, "n"); return (await B.get("12345")).text(); });
  await step("unknown upload complete", async () => obj(await B.resumeMultipartUpload("a.txt", "bm9wZQ").complete([])));
  await step("unknown upload abort", async () => B.resumeMultipartUpload("a.txt", "bm9wZQ").abort());
  await step("head multipart object", async () => obj(await B.head("mpu/obj")));
  return calls;
}

export default {
  async fetch(request, env) {
    return Response.json(await run(env.B));
  },
};
