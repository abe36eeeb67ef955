"""PTB-V synthesis: the parameter schema, printer styles, paper rendering and the simulated photo."""
