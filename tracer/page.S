/* The HTML report's page (tracer/page.html), built into ptleak as bytes
 * between html_page_start and html_page_end (writer_html.c). */
	.section .rodata
	.globl html_page_start
	.globl html_page_end
html_page_start:
	.incbin "tracer/page.html"
html_page_end:
	.section .note.GNU-stack,"",@progbits
