// `env.ASSETS` as tenant code sees it: a Fetcher whose fetch() answers from the
// version's own Static Assets (the gateway's WdlAssets, workerd/gateway/assets.js).
export function wrap(stub, name) {
  return Object.freeze({
    fetch(input, init) {
      return stub.fetch(input instanceof Request && init === undefined ? input
        : new Request(input, init));
    },
    connect() {
      throw new Error(`connect() over the assets binding ${name} is not supported`);
    },
  });
}
