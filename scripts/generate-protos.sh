#!/usr/bin/env bash
# Regenerates Sources/EnvoyAPI/Generated from protos/ (Envoy's external processing API and gRPC
# health, written for Understudy from their field numbers). The output is committed: run this
# only after changing a .proto. Needs protoc (Debian: protobuf-compiler) and the two plugins,
# built once from the same package versions the project depends on (about two minutes):
#   PLUGINS=/tmp/plugins bash scripts/generate-protos.sh
set -euo pipefail
cd "$(dirname "$0")/.."
plugins=${PLUGINS:-/tmp/plugins}
if [ ! -x "$plugins/.build/release/protoc-gen-grpc-swift-2" ]; then
  mkdir -p "$plugins/Sources/Dummy"
  : > "$plugins/Sources/Dummy/Dummy.swift"
  cat > "$plugins/Package.swift" <<'SWIFT'
// swift-tools-version:6.0
import PackageDescription
let package = Package(
    name: "plugins",
    dependencies: [
        .package(url: "https://github.com/apple/swift-protobuf.git", exact: "1.39.0"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf.git", exact: "2.4.1"),
    ],
    targets: [.target(name: "Dummy")]
)
SWIFT
  (cd "$plugins" && swift build -c release --product protoc-gen-swift && swift build -c release --product protoc-gen-grpc-swift-2)
fi
command -v protoc >/dev/null || { echo "protoc is missing (apt-get install protobuf-compiler)" >&2; exit 1; }
out=Sources/EnvoyAPI/Generated
rm -rf "$out"
mkdir -p "$out"
protos=$(cd protos && find . -name '*.proto' | sed 's|^\./||' | sort)
(cd protos && protoc -I . -I /usr/include \
  --plugin=protoc-gen-swift="$plugins/.build/release/protoc-gen-swift" \
  --plugin=protoc-gen-grpc-swift-2="$plugins/.build/release/protoc-gen-grpc-swift-2" \
  --swift_out=../$out --swift_opt=Visibility=Public,FileNaming=PathToUnderscores \
  --grpc-swift-2_out=../$out --grpc-swift-2_opt=Visibility=Public,FileNaming=PathToUnderscores,Server=true,Client=true \
  $protos)
# Files of protos without a service say only that.
grep -l "This file contained no services" "$out"/*.grpc.swift | xargs -r rm
ls "$out"
