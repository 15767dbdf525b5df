<?php
// Stores PREFIX0..PREFIX(N-1) with PHP's memcached extension configured as
// SETTING, for the routing table test: where the keys land is where this
// configuration places them.
//   php placement.php SERVERS SETTING PREFIX N
//   SETTING: defaults | libketama_compatible | consistent
[$servers, $setting, $prefix, $n] = [explode(",", $argv[1]), $argv[2], $argv[3], (int)$argv[4]];
$m = new Memcached();
if ($setting === "libketama_compatible") $m->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
elseif ($setting === "consistent") $m->setOption(Memcached::OPT_DISTRIBUTION, Memcached::DISTRIBUTION_CONSISTENT);
elseif ($setting !== "defaults") exit(64);
foreach ($servers as $server) {
    [$host, $port] = explode(":", $server);
    $m->addServer($host, (int)$port);
}
$stored = 0;
for ($i = 0; $i < $n; $i++) if ($m->set($prefix . $i, "v$i")) $stored++;
echo "stored $stored\n";
