// mcctl fleet: the fleet view as etcd holds it (docs/DESIGN.md, "The fleet
// view"), read directly with the daemon's own etcd client and verdict.
#pragma once

#include <string>

namespace mcwatch {

// Hosts whose lease is alive, each one's observation of every configured
// server, the verdict and why, the rejoin record, and whether etcd answers.
// Exit 0 when every server is published live, 1 when some is not, 2 when the
// configuration has no [fleet] or etcd cannot be read.
int mcctl_fleet(const std::string& config_path, bool as_json);

}  // namespace mcwatch
