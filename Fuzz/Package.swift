// swift-tools-version:6.0
// Fuzz targets (libFuzzer through `-sanitize=fuzzer`), apart from the main package because
// libFuzzer brings its own `main`, which clashes with the main package's executables.
// Build and run: scripts/fuzz [TARGET] [SECONDS]
import Foundation
import PackageDescription

// A path dependency's identity is its directory's name, whatever the clone is called.
let main = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()

let package = Package(
    name: "felhom-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: "..")],
    targets: [
        .executableTarget(
            name: "fuzz-proxy-header",
            dependencies: [.product(name: "FelhomCore", package: main)],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        )
    ]
)
