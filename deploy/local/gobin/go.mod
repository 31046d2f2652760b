module irisop.local/gobin

go 1.22
