// swift-tools-version:6.0
// Fuzz targets (libFuzzer), apart from the main package because libFuzzer brings its own `main`,
// which clashes with the main package's executables. One target per parser that reads bytes an
// attacker may choose; seeds in seeds/TARGET. Build and run: scripts/fuzz [TARGET] [SECONDS]
import Foundation
import PackageDescription

// A path dependency's identity is its directory's name, whatever the clone is called.
let main = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().lastPathComponent.lowercased()

/// Target name → the main package's products it reads.
let targets: [(String, [String])] = [
    ("fuzz-proxy-header", ["FelhomCore"]),
    ("fuzz-canonical-json", ["FelhomCore"]),
    ("fuzz-op-blob", ["FelhomCore"]),
    ("fuzz-secrets-file", ["FelhomCore"]),
    ("fuzz-host-report", ["FelhomCore"]),
    ("fuzz-guest-report", ["FelhomCore"]),
    ("fuzz-desired-state", ["FelhomCore"]),
    ("fuzz-sshsig", ["FelhomSigning"]),
    ("fuzz-openssh-key", ["FelhomSigning"]),
    ("fuzz-pve-response", ["FelhomCore", "Proxmox"]),
]

let package = Package(
    name: "felhom-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(path: "..")],
    targets: [.target(name: "FuzzDriver")]
        + targets.map { name, products in
            .executableTarget(
                name: name,
                dependencies: ["FuzzDriver"] + products.map { .product(name: $0, package: main) },
                swiftSettings: [.unsafeFlags(["-parse-as-library"])]
            )
        }
)
