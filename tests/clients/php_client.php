<?php
// PHP's memcached extension for the preload tests: the commands of mc_client.c.
// PHP does every get through memcached_mget + memcached_fetch_result.
$servers = explode(",", $argv[1]);
$command = $argv[2];
$args = array_slice($argv, 3);
$m = new Memcached();
$m->setOption(Memcached::OPT_LIBKETAMA_COMPATIBLE, true);
foreach ($servers as $server) {
    [$host, $port] = explode(":", $server);
    $m->addServer($host, (int)$port);
}
switch ($command) {
case "set-many":
    $stored = 0;
    for ($i = 0; $i < (int)$args[1]; $i++) if ($m->set($args[0] . $i, "v$i", (int)$args[2])) $stored++;
    echo "stored $stored\n";
    break;
case "get-many":
    $hits = 0;
    for ($i = 0; $i < (int)$args[1]; $i++) if ($m->get($args[0] . $i) === "v$i") $hits++;
    echo "hits $hits\n";
    break;
case "mget-many":
    $keys = [];
    for ($i = 0; $i < (int)$args[1]; $i++) $keys[] = $args[0] . $i;
    $got = $m->getMulti($keys);
    $found = 0;
    for ($i = 0; $i < (int)$args[1]; $i++) if (($got[$args[0] . $i] ?? null) === "v$i") $found++;
    echo "found $found\n";
    break;
case "mget":
case "delayed":
case "mget-by-key":
    // Every value the program got, then its result code and message.
    if ($command === "mget") $got = $m->getMulti($args);
    elseif ($command === "mget-by-key") $got = $m->getMultiByKey($args[0], array_slice($args, 1));
    else $got = $m->getDelayed($args) ? $m->fetchAll() : false;
    if ($got === false) {
        echo "FALSE\n";
    } else {
        $lines = [];
        foreach ($got as $key => $value)  // fetchAll: a list of ["key" => ..., "value" => ...]
            $lines[] = is_array($value) ? "VALUE {$value["key"]} {$value["value"]}" : "VALUE $key $value";
        sort($lines);
        foreach ($lines as $line) echo "$line\n";
    }
    echo "END " . $m->getResultCode() . " " . $m->getResultMessage() . "\n";
    break;
case "load":
    // A steady read/write load: what the program saw fail (a miss is not a failure).
    $ops = 0;
    $errors = [];
    $end = microtime(true) + (float)$args[2];
    for ($i = 0; microtime(true) < $end; $i = ($i + 1) % (int)$args[1]) {
        $key = $args[0] . $i;
        $ops++;
        if (!$m->set($key, "v$i")) $errors[$m->getResultMessage()] = ($errors[$m->getResultMessage()] ?? 0) + 1;
        $ops++;
        if ($m->get($key) === false && $m->getResultCode() !== Memcached::RES_NOTFOUND)
            $errors[$m->getResultMessage()] = ($errors[$m->getResultMessage()] ?? 0) + 1;
    }
    echo "ops $ops errors " . array_sum($errors) . "\n";
    foreach ($errors as $message => $count) echo "error $message $count\n";
    break;
case "get-by-key":
    $value = $m->getByKey($args[0], $args[1]);
    echo $value === false ? $m->getResultMessage() . "\n" : "VALUE $value\n";
    break;
case "set-by-key":
    echo $m->setByKey($args[0], $args[1], $args[2], (int)$args[3]) ? "SUCCESS\n" : $m->getResultMessage() . "\n";
    break;
case "incr":
    $value = $m->increment($args[0], (int)$args[1]);
    echo $value === false ? $m->getResultMessage() . "\n" : "VALUE $value\n";
    break;
case "count":
    $acknowledged = 0;
    for ($i = 0; $i < (int)$args[1]; $i++) if ($m->increment($args[0], 1) !== false) $acknowledged++;
    echo "acknowledged $acknowledged\n";
    break;
case "touch":
    echo $m->touch($args[0], (int)$args[1]) ? "SUCCESS\n" : $m->getResultMessage() . "\n";
    break;
case "set":
    echo $m->set($args[0], $args[1], (int)$args[2]) ? "SUCCESS\n" : "FAILURE\n";
    break;
case "get":
    $value = $m->get($args[0]);
    echo $value === false ? "NOT FOUND\n" : "VALUE $value\n";
    break;
case "delete":
    echo $m->delete($args[0]) ? "SUCCESS\n" : "NOT FOUND\n";
    break;
case "servers":
    // getServerList() walks libmemcached's list with memcached_server_cursor.
    $list = $m->getServerList();
    foreach ($list as $server) echo "server {$server["host"]}:{$server["port"]}\n";
    echo "count " . count($list) . "\n";
    break;
default:
    exit(64);
}
