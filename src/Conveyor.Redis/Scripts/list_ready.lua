local found = {}
ready_range(ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]), found)
return newest(found, tonumber(ARGV[4]))
