"""fetta.boards: FPGA platforms, the UART host link and bitstream builds."""
