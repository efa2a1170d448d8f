// The internal token on the workerd side (services/internal.py is the Python side):
// the gateway's `/__wdl/*` paths - reachable on the PUBLIC port like every other
// path - and the Durable Object host's sockets answer only requests that carry
// env.INTERNAL_TOKEN, as `x-wdl-internal-token` or `Authorization: Bearer`; anything
// else gets 401 {code, message}. The token goes out on every call to an internal
// service (internalHeaders). Shared by the gateway and workerd/objects/objects.js.

export const INTERNAL_HEADER = "x-wdl-internal-token";

export function sameSecret(a, b) {
  // Constant-time comparison: the internal token guards every tenant's cron.
  if (typeof a !== "string" || typeof b !== "string" || a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

export function isInternal(request, env) {
  const token = env.INTERNAL_TOKEN;
  if (!token) return false;  // no token configured: nobody gets in
  if (sameSecret(request.headers.get(INTERNAL_HEADER), token)) return true;
  const auth = request.headers.get("authorization");
  return auth !== null && auth.slice(0, 7).toLowerCase() === "bearer " &&
    sameSecret(auth.slice(7).trim(), token);
}

// null when the request carries the token, else the 401 to answer with.
export function internalRefusal(request, env) {
  if (isInternal(request, env)) return null;
  return new Response(JSON.stringify({
    code: "unauthorized", message: "this endpoint requires the platform's internal token",
  }) + "\n", {
    status: 401,
    headers: { "content-type": "application/json", "cache-control": "no-store",
               "www-authenticate": 'Bearer realm="wdl-internal"' },
  });
}

export function internalHeaders(env, extra) {
  return { [INTERNAL_HEADER]: env.INTERNAL_TOKEN, ...extra };
}
