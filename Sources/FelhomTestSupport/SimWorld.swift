import FelhomCore
import Foundation
import PVESimulator
import Proxmox

/// An in-process Proxmox VE simulator on a free loopback port (HTTPS, pinned), with fast tasks,
/// and clients for it — the one way suites seed and start a simulated host.
public struct SimHarness: Sendable {
    public let sim: PVESimulator.Running

    /// Starts a simulator seeded with ``SimSeed/defaultState(now:)``, adjusted by `adjust`.
    public static func start(
        clock: any WallClock = SystemWallClock(), stateDirectory: URL? = nil, taskSeconds: Double = 0.05, sharedPBS: SimPBSDatastore? = nil,
        _ adjust: (inout SimState) -> Void = { _ in }
    ) async throws -> SimHarness {
        var state = SimSeed.defaultState(now: clock.now())
        state.settings.taskDurations = ["default": taskSeconds]
        adjust(&state)
        var options = PVESimulator.Options()
        options.port = 0
        options.seed = state
        options.clock = clock
        options.stateDirectory = stateDirectory
        options.sharedPBS = sharedPBS
        return SimHarness(sim: try await PVESimulator.start(options))
    }

    /// The connection a token would use (the agent's token by default), certificate pinned.
    public func connection(_ tokenID: String = SimSeed.agentTokenID, secret: String? = nil) throws -> PVEConnection {
        try PVEConnection(
            host: "127.0.0.1", port: sim.port, tokenID: tokenID,
            tokenSecret: Secret(secret ?? sim.secret(for: tokenID) ?? "missing"),
            trust: .pinnedLeafSHA256(try CertificateFingerprint(parsing: sim.fingerprint ?? "")), requestTimeout: .seconds(20))
    }

    /// A client as the agent's token (least privilege) or any other token.
    public func client(_ tokenID: String = SimSeed.agentTokenID, secret: String? = nil) throws -> PVEClient {
        PVEClient(connection: try connection(tokenID, secret: secret))
    }

    /// A client with all privileges, for setting the scene behind the agent's back.
    public func rootClient() throws -> PVEClient { try client(SimSeed.rootTokenID) }

    public var engine: PVESimEngine { sim.engine }
    public var port: Int { sim.port }

    public func stop() async { await sim.shutdown() }
}

/// Runs `body` with a fresh simulator, shut down however `body` ends.
public func withSim<T>(
    clock: any WallClock = SystemWallClock(), stateDirectory: URL? = nil, taskSeconds: Double = 0.05, sharedPBS: SimPBSDatastore? = nil,
    _ adjust: (inout SimState) -> Void = { _ in }, _ body: (SimHarness) async throws -> T
) async throws -> T {
    let harness = try await SimHarness.start(
        clock: clock, stateDirectory: stateDirectory, taskSeconds: taskSeconds, sharedPBS: sharedPBS, adjust)
    do {
        let result = try await body(harness)
        await harness.stop()
        return result
    } catch {
        await harness.stop()
        throw error
    }
}
