extension PVEAPI {
    /// Whether a container exists: `false` only on Proxmox's definite "does not exist"; any other
    /// failure is thrown. An unreadable slot is not an empty one — the agent never provisions into,
    /// compensates or declares destroyed a vmid it merely failed to read.
    public func containerExists(node: String, vmid: Int) async throws -> Bool {
        do {
            _ = try await containerStatus(node: node, vmid: vmid)
            return true
        } catch let e as PVEError where e.code == .notFound {
            return false
        }
    }
}
