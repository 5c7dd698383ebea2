// swift-tools-version:6.0
import PackageDescription

// Felhom: one package, one library module per component, thin executables.
// Dependency direction: executables -> components (FelhomAgent, PVESimulator) -> Proxmox -> FelhomCore.
let package = Package(
    name: "felhom",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "felhom", targets: ["felhom"]),
        .executable(name: "felhom-agent", targets: ["felhom-agent"]),
        .library(name: "Proxmox", targets: ["Proxmox"]),
        .library(name: "PVESimulator", targets: ["PVESimulator"]),
        .library(name: "FelhomSigning", targets: ["FelhomSigning"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "3.12.3"),
        .package(url: "https://github.com/apple/swift-certificates.git", from: "1.21.1"),
        .package(url: "https://github.com/apple/swift-asn1.git", from: "1.7.4"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
    ],
    targets: [
        .target(
            name: "FelhomCore",
            dependencies: [.product(name: "Logging", package: "swift-log")]
        ),
        .target(
            name: "FelhomSigning",
            dependencies: [
                "FelhomCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
            ]
        ),
        .target(
            name: "Proxmox",
            dependencies: [
                "FelhomCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "PVESimulator",
            dependencies: [
                "FelhomCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "SwiftASN1", package: "swift-asn1"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "FelhomAgent",
            dependencies: ["FelhomCore", "Proxmox", .product(name: "Logging", package: "swift-log")]
        ),
        .executableTarget(
            name: "felhom",
            dependencies: [
                "FelhomCore", "FelhomSigning", "Proxmox", "PVESimulator", "FelhomAgent",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ]
        ),
        .executableTarget(
            name: "felhom-agent",
            dependencies: [
                "FelhomCore", "Proxmox", "FelhomAgent",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "FelhomCoreTests",
            dependencies: ["FelhomCore", .product(name: "Crypto", package: "swift-crypto")],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "ProxmoxTests",
            dependencies: [
                "Proxmox", "PVESimulator", "FelhomCore",
                .product(name: "X509", package: "swift-certificates"),
                .product(name: "Crypto", package: "swift-crypto"),
            ]
        ),
        .testTarget(
            name: "PVESimulatorTests",
            dependencies: ["PVESimulator", "Proxmox", "FelhomCore"],
            exclude: ["Fixtures"]
        ),
        .testTarget(
            name: "FelhomSigningTests",
            dependencies: [
                "FelhomSigning", "FelhomCore",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "_CryptoExtras", package: "swift-crypto"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ],
            exclude: ["Fixtures"]
        ),
        .testTarget(name: "FelhomAgentTests", dependencies: ["FelhomAgent", "Proxmox", "PVESimulator", "FelhomCore"]),
    ],
    swiftLanguageModes: [.v6]
)
