module userstream.local/pause

go 1.22
