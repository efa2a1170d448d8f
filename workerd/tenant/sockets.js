// "cloudflare:sockets" as a deployed tenant's modules see it: the gateway rewrites the
// specifier in the tenant's own ES modules to this module (gateway/self.js). Everything
// is workerd's, except that `connect()` made inside a request carries the request's
// name to the egress, so the connection counts against the request's subrequest budget
// as on Cloudflare. workerd hands the egress nothing of the tenant's request with a
// socket, only the address (gateway/sockets.js), so the name travels in it: the host
// gets `.<request name>.wdl-request` appended, which the egress takes off (and checks:
// a forged or expired name is refused) before it judges the address. An IPv6 literal
// cannot carry it (workerd parses `[..]` strictly) and is not counted, as a connect()
// outside any request is not (docs/dataplane.md "Sockets (connect())").
export * from "cloudflare:sockets";
import { connect as nativeConnect } from "cloudflare:sockets";
import { currentRequest } from "./requests.js";

// The built-ins used here, taken before the tenant's modules run (as requests.js does).
const { apply } = Reflect;
const { defineProperty } = Object;
const { lastIndexOf, replace, slice, startsWith } = String.prototype;
const then = Promise.prototype.then;
const NativeString = String;
const SUFFIX = ".wdl-request";

function named(hostname, id) {
  const host = NativeString(hostname);
  return apply(startsWith, host, ["["]) ? null : `${host}.${id}${SUFFIX}`;
}

function withName(address, id) {
  if (typeof address === "string") {
    const colon = apply(lastIndexOf, address, [":"]);
    if (colon <= 0) return address;  // workerd's own error for a malformed address
    const host = named(apply(slice, address, [0, colon]), id);
    return host === null ? address : host + apply(slice, address, [colon]);
  }
  if (address && typeof address === "object" && "hostname" in address) {
    const host = named(address.hostname, id);
    return host === null ? address : { hostname: host, port: address.port };
  }
  return address;
}

// The socket's `opened` names the address the tenant asked for, not the named one.
function unnamed(socket, id) {
  const mark = `.${id}${SUFFIX}`;
  const strip = (info) => {
    if (info && typeof info.remoteAddress === "string") {
      return { ...info, remoteAddress: apply(replace, info.remoteAddress, [mark, ""]) };
    }
    return info;
  };
  const opened = apply(then, socket.opened, [strip]);
  apply(then, opened, [undefined, () => {}]);  // the tenant may never look at it
  defineProperty(socket, "opened", { value: opened, configurable: true });
  return socket;
}

export function connect(address, options) {
  const id = currentRequest();
  if (id === undefined) return nativeConnect(address, options);
  const named = withName(address, id);
  const socket = nativeConnect(named, options);
  return named === address ? socket : unnamed(socket, id);
}
