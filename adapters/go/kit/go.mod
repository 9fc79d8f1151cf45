module tally.example/kit

go 1.25
