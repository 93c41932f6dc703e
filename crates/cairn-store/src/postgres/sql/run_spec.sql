SELECT s.source FROM runs r JOIN run_specs s ON s.run_no = r.run_no WHERE r.id = $1
